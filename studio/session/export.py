"""Export of the open project: the film, then the interchange files and the drift report from the
same plan. The one place this sequence exists; the CLI's ``export`` and the export dialog both
call :func:`export_project`.

A *conformed* export (``ExportOptions.fps`` other than the project's rate, e.g. 24 fps for an
EDL of a 16 fps project) re-times the film, and the interchange files then describe a timeline
at that rate: each take at another rate is written once more, conformed, beside the film
(``<film> media/<take>-24fps.mp4``: the film's own frames for that shot), and the OTIO, EDL and
FCP XML reference those copies, so every source timecode counts frames of the file it names."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from studio.core.model import Project
from studio.core.tasks import CancelledFn, ProgressFn

if TYPE_CHECKING:
    from studio.export.film import ExportResult
    from studio.export.plan import ExportPlan


@dataclass(frozen=True)
class ExportTargets:
    """What to write besides the film (None: not wanted)."""

    otio: Path | None = None
    edl: Path | None = None
    report: Path | None = None
    relative_media: bool = False  # OTIO media paths relative to the .otio file
    xml: Path | None = None  # Final Cut Pro 7 XML (Premiere Pro, DaVinci Resolve)

    @property
    def interchange(self) -> bool:
        """Any timeline file wanted (they reference media, possibly conformed copies)."""
        return any(t is not None for t in (self.otio, self.edl, self.xml))

    def files(self) -> list[Path]:
        """The files wanted besides the film."""
        return [Path(t) for t in (self.otio, self.edl, self.xml, self.report) if t is not None]

    @classmethod
    def beside(cls, film: Path, *, otio: bool = False, edl: bool = False, report: bool = False,
               relative_media: bool = False, xml: bool = False) -> "ExportTargets":
        """Targets named after the film: ``film.otio``, ``film.edl``, ``film.xml``,
        ``film-report.html``."""
        film = Path(film)
        return cls(otio=film.with_suffix(".otio") if otio else None,
                   edl=film.with_suffix(".edl") if edl else None,
                   report=film.with_name(film.stem + "-report.html") if report else None,
                   relative_media=relative_media,
                   xml=film.with_suffix(".xml") if xml else None)


@dataclass
class ExportOutputs:
    film: "ExportResult"
    otio: Path | None = None
    edl: Path | None = None
    report: Path | None = None
    xml: Path | None = None
    media: list[Path] = field(default_factory=list)  # conformed copies of takes (see above)
    # One line each for what was read around the export and set aside (a damaged take sidecar):
    # the export went on without it.
    warnings: list[str] = field(default_factory=list)


def check_targets(plan: "ExportPlan", targets: ExportTargets) -> None:
    """Fail before minutes of encoding when an interchange file cannot be written (an EDL or
    FCP XML at a frame rate SMPTE timecode cannot express)."""
    from studio.export.interchange import check_edl, check_fcp_xml

    if targets.edl is not None:
        check_edl(plan)
    if targets.xml is not None:
        check_fcp_xml(plan)


def export_project(project: Project, folder: Path, film: Path, plan: "ExportPlan",
                   targets: ExportTargets | None = None, *, on_progress: ProgressFn | None = None,
                   cancelled: CancelledFn | None = None) -> ExportOutputs:
    """Write the film and then each wanted interchange file and the report, all from ``plan``.
    Raises StudioError (naming the file) or :class:`~studio.core.tasks.Cancelled`; every file is
    written atomically, so a failure or cancel leaves no half-written output."""
    from studio.export.film import export_film, plan_inputs, write_conformed_media
    from studio.export.interchange import write_edl, write_fcp_xml, write_otio
    from studio.export.plan import assign_conformed_media
    from studio.export.report import sidecar_problems, write_report
    from studio.export.targets import check_outputs, prepare_folders

    targets = targets or ExportTargets()
    check_targets(plan, targets)
    # Every output at once, before any is written: none over the project or an input, no two
    # the same file (the film's own check in export_film repeats the first part for callers
    # that write only a film).
    check_outputs(folder, [Path(film), *targets.files()], plan_inputs(plan))
    prepare_folders(targets.files())
    result = export_film(project, Path(folder), Path(film), plan=plan, on_progress=on_progress,
                         cancelled=cancelled)
    out = ExportOutputs(film=result)
    out.warnings.extend(sidecar_problems(project, folder, plan) if targets.report else [])
    if targets.interchange:
        conform = assign_conformed_media(plan, result.path)
        # The conformed copies are outputs too (``<film> media/``): same rules.
        check_outputs(folder, [result.path, *targets.files(),
                               *(it.media for it in conform if it.media is not None)],
                      plan_inputs(plan))
        out.media = write_conformed_media(plan, conform, on_progress=on_progress,
                                          cancelled=cancelled)
    if targets.otio is not None:
        out.otio = write_otio(project, folder, plan, targets.otio,
                              relative=targets.relative_media)
    if targets.edl is not None:
        out.edl = write_edl(project, folder, plan, targets.edl)
    if targets.xml is not None:
        out.xml = write_fcp_xml(project, folder, plan, targets.xml)
    if targets.report is not None:
        out.report = write_report(project, folder, plan, targets.report,
                                  film_name=result.path.name)
    return out
