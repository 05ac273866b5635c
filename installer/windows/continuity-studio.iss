; Continuity Studio - Windows installer (Inno Setup 6).
;
; *** WRITTEN, NOT BUILT OR TESTED: this project's CI runs on Linux only. ***
;
; Recipe (on Windows, from a clone, in a Python 3.11 x64 environment with the app installed):
;   py -m pip install . "pyinstaller>=6.10"
;   py -m PyInstaller --noconfirm --clean packaging\continuity-studio.spec
;       -> dist\continuity-studio\continuity-studio.exe      (console: CLI sub-commands)
;          dist\continuity-studio\continuity-studio-gui.exe  (windowed: Start menu entry)
;   "C:\Program Files (x86)\Inno Setup 6\ISCC.exe" /DAppVersion=0.1.0 installer\windows\continuity-studio.iss
;       -> dist\installer\continuity-studio-0.1.0-windows-x64-setup.exe
; Then run packaging\smoke.sh's steps by hand (Git Bash can run the script itself against the
; installed folder: bash packaging/smoke.sh "%LOCALAPPDATA%\Programs\Continuity Studio"
; "...\continuity-studio.exe").
;
; Installs per user by default (no admin rights: {autopf} is %LOCALAPPDATA%\Programs), or for
; all users when the installer is run as administrator. Uninstalling removes the program folder
; only: projects, settings and the GPU runtime (%LOCALAPPDATA%\continuity-studio, several GB;
; remove it first with `continuity-studio runtime remove` if wanted) are left alone.
; No file association: Windows associates by extension and .json belongs to editors.

#define AppName "Continuity Studio"
#ifndef AppVersion
  #define AppVersion "0.1.0"
#endif
#define Dist "..\..\dist\continuity-studio"

[Setup]
; AppId identifies the product for upgrades and uninstall: never change it.
AppId={{6F2B9C4E-3D7A-4E1B-9A55-0C8D2E7F41A3}
AppName={#AppName}
AppVersion={#AppVersion}
AppVerName={#AppName} {#AppVersion}
AppPublisher=Continuity Studio contributors
DefaultDirName={autopf}\{#AppName}
DefaultGroupName={#AppName}
DisableProgramGroupPage=yes
PrivilegesRequired=lowest
PrivilegesRequiredOverridesAllowed=dialog
ArchitecturesAllowed=x64compatible
ArchitecturesInstallIn64BitMode=x64compatible
OutputDir=..\..\dist\installer
OutputBaseFilename=continuity-studio-{#AppVersion}-windows-x64-setup
SetupIconFile=..\..\resources\icons\continuity-studio.ico
UninstallDisplayIcon={app}\continuity-studio-gui.exe
UninstallDisplayName={#AppName}
Compression=lzma2/max
SolidCompression=yes
WizardStyle=modern
MinVersion=10.0

[Tasks]
Name: "desktopicon"; Description: "{cm:CreateDesktopIcon}"; GroupDescription: "{cm:AdditionalIcons}"; Flags: unchecked

[Files]
Source: "{#Dist}\*"; DestDir: "{app}"; Flags: ignoreversion recursesubdirs createallsubdirs

[Icons]
Name: "{autoprograms}\{#AppName}"; Filename: "{app}\continuity-studio-gui.exe"
Name: "{autoprograms}\{#AppName} (demo project)"; Filename: "{app}\continuity-studio-gui.exe"; Parameters: "--demo"
Name: "{autodesktop}\{#AppName}"; Filename: "{app}\continuity-studio-gui.exe"; Tasks: desktopicon

[Run]
Filename: "{app}\continuity-studio-gui.exe"; Parameters: "--demo"; Description: "{cm:LaunchProgram,{#AppName}}"; Flags: nowait postinstall skipifsilent
