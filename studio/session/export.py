"""Export of the open project: the film, then the interchange files and the drift report from the
same plan. The one place this sequence exists; the CLI's ``export`` and the export dialog both
call :func:`export_project`."""

from __future__ import annotations

from dataclasses import dataclass
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

    @classmethod
    def beside(cls, film: Path, *, otio: bool = False, edl: bool = False, report: bool = False,
               relative_media: bool = False) -> "ExportTargets":
        """Targets named after the film: ``film.otio``, ``film.edl``, ``film-report.html``."""
        film = Path(film)
        return cls(otio=film.with_suffix(".otio") if otio else None,
                   edl=film.with_suffix(".edl") if edl else None,
                   report=film.with_name(film.stem + "-report.html") if report else None,
                   relative_media=relative_media)


@dataclass
class ExportOutputs:
    film: "ExportResult"
    otio: Path | None = None
    edl: Path | None = None
    report: Path | None = None


def check_targets(plan: "ExportPlan", targets: ExportTargets) -> None:
    """Fail before minutes of encoding when an interchange file cannot be written (an EDL at a
    frame rate CMX 3600 cannot express)."""
    from studio.export.interchange import check_edl

    if targets.edl is not None:
        check_edl(plan)


def export_project(project: Project, folder: Path, film: Path, plan: "ExportPlan",
                   targets: ExportTargets | None = None, *, on_progress: ProgressFn | None = None,
                   cancelled: CancelledFn | None = None) -> ExportOutputs:
    """Write the film and then each wanted interchange file and the report, all from ``plan``.
    Raises StudioError (naming the file) or :class:`~studio.core.tasks.Cancelled`; every file is
    written atomically, so a failure or cancel leaves no half-written output."""
    from studio.export.film import export_film
    from studio.export.interchange import write_edl, write_otio
    from studio.export.report import write_report

    targets = targets or ExportTargets()
    check_targets(plan, targets)
    result = export_film(project, Path(folder), Path(film), plan=plan, on_progress=on_progress,
                         cancelled=cancelled)
    out = ExportOutputs(film=result)
    if targets.otio is not None:
        out.otio = write_otio(project, folder, plan, targets.otio,
                              relative=targets.relative_media)
    if targets.edl is not None:
        out.edl = write_edl(project, folder, plan, targets.edl)
    if targets.report is not None:
        out.report = write_report(project, folder, plan, targets.report,
                                  film_name=result.path.name)
    return out
