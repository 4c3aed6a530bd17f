"""The .deb and .rpm of packaging/build, checked as files and installed for real into a fresh Debian root.

One build (release 1, and release 2 to upgrade to) and one root serve every check. The root is
made by mmdebstrap from Debian's own packages: the host's release, with the .deb's dependencies
and nothing else. The module fixture runs the whole life of each package there once and records
what each step left: the .deb installed with apt, upgraded, removed, purged; then the .rpm in the
same root with `rpm --root`, installed, upgraded, erased. The tests check those records. Every
command and its output go to a transcript (GPUWATCH_PACKAGE_TRANSCRIPT=FILE keeps a copy).

systemd does not run in the root. A stand-in takes the place of /usr/bin/systemctl there: it logs
each call and passes it to the real one (moved aside), which works offline (preset, enable,
is-enabled). The upgrade and the removal run with /run/systemd/system present, where the
stand-in answers a running manager's verbs itself, so the maintainer scripts take their
"systemd runs" branch and the log shows what they asked for.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
VERSION = re.search(
    r'^__version__ = "(.+)"$', (REPO / "gpuwatch/__init__.py").read_text(), re.MULTILINE
).group(1)
# The threshold the repo's own unit test holds systemd/gpuwatch.service to (read, not restated).
MAX_EXPOSURE = float(
    re.search(
        r"^MAX_EXPOSURE = (\d+\.\d+)$", (REPO / "tests/service/test_units.py").read_text(), re.MULTILINE
    ).group(1)
)
DEBIAN_MIRROR = "http://deb.debian.org/debian"
# The root's own /tmp (never the host's): the packages to install and the stand-in's log.
ROOT_TMP = "/tmp"  # noqa: S108 - a folder inside the test's Debian root
ROOT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
UNIT = "/usr/lib/systemd/system/gpuwatch.service"
WANTS = "etc/systemd/system/multi-user.target.wants/gpuwatch.service"
CONFFILES = {"/etc/default/gpuwatch", "/etc/gpuwatch/gpuwatch.toml"}
# Paths whose changes are the package managers' and the system's own bookkeeping, not the
# package's files: dpkg's and apt's logs and caches, rpm's database (created for the .rpm), the
# account files' backups systemd-sysusers writes, and the folders the test itself uses
# (/run/systemd: see pretend_systemd_runs).
BOOKKEEPING = re.compile(
    r"^(proc|sys|dev|tmp|run/systemd|var/log|var/cache|var/lib/apt|var/lib/rpm)(/|$)|^etc/\w+-$"
)

# What bash's completion offers for `gpuwatch sta<TAB>`, through the installed completion file.
COMPLETE_STA = (
    "source /usr/share/bash-completion/completions/gpuwatch; COMP_WORDS=(gpuwatch sta); COMP_CWORD=1; "
    '_gpuwatch_completion gpuwatch; echo "${COMPREPLY[@]}"'
)
# The stand-in systemctl (see the module's docstring). While "systemd runs": a manager's verbs
# (start, stop, restart, try-restart, daemon-reload) succeed and is-active says active; the rest
# (enable, disable, preset, is-enabled) goes to the real one offline (--root=/), as the real one,
# seeing /run/systemd/system, would otherwise ask a bus that is not there.
SYSTEMCTL_STAND_IN = """#!/bin/sh
# Test stand-in: logs the call, then answers as described in tests/packaging/test_packages.py.
echo "systemctl $*" >>/tmp/systemctl.log
if [ -d /run/systemd/system ]; then
  for word in "$@"; do
    case "$word" in
      start | stop | restart | try-restart | daemon-reload | is-active) exit 0 ;;
    esac
  done
  exec /usr/bin/systemctl.real --root=/ "$@"
fi
exec /usr/bin/systemctl.real "$@"
"""


def _arch() -> tuple[str, str]:
    machine = os.uname().machine
    return {"x86_64": ("amd64", "x86_64"), "aarch64": ("arm64", "aarch64")}[machine]


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is missing: tests/run installs it (Debian's mmdebstrap and rpm packages)")
    return found


@dataclass
class Transcript:
    """Every command the fixture ran, with its output, in order."""

    lines: list[str] = field(default_factory=list)

    def note(self, text: str) -> None:
        self.lines.append(f"\n# {text}")

    def add(self, shown: str, result: subprocess.CompletedProcess[str], keep: str | None = None) -> None:
        """A command and its output (only the lines matching `keep`, when given)."""
        self.lines.append(f"$ {shown}")
        output = (result.stdout + result.stderr).rstrip()
        if keep is not None:
            lines = output.splitlines()
            kept = [line for line in lines if re.search(keep, line)]
            output = "\n".join([*kept, f"[{len(lines) - len(kept)} more lines]"])
        if output:
            self.lines.append(output)
        if result.returncode:
            self.lines.append(f"[exit {result.returncode}]")

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


@dataclass
class Root:
    """A Debian root on disk, and the commands run in it (chroot, clean environment)."""

    path: Path
    transcript: Transcript

    def host(
        self, args: list[str], *, timeout: float = 300, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            args, capture_output=True, text=True, timeout=timeout, check=False, stdin=subprocess.DEVNULL
        )
        self.transcript.add(" ".join(args).replace(str(self.path), "ROOT"), result)
        if check and result.returncode:
            raise AssertionError(f"{args} failed:\n{self.transcript.text()}")
        return result

    def run(
        self,
        args: list[str],
        *,
        user: str | None = None,
        check: bool = True,
        timeout: float = 300,
        keep: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """`args` in the root, as root or (runuser) as `user`, in a minimal environment."""
        inner = ["runuser", "-u", user, "--", *args] if user else args
        env = {"PATH": ROOT_PATH, "LANG": "C.UTF-8", "DEBIAN_FRONTEND": "noninteractive", "HOME": "/root"}
        result = subprocess.run(
            ["chroot", str(self.path), *inner],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env=env,
            stdin=subprocess.DEVNULL,
        )
        self.transcript.add(("(root) " if not user else f"({user}) ") + " ".join(args), result, keep)
        if check and result.returncode:
            raise AssertionError(f"{args} failed in the root:\n{self.transcript.text()}")
        return result

    def file(self, path: str) -> Path:
        return self.path / path.lstrip("/")

    def snapshot(self) -> set[str]:
        """Every path in the root but the bookkeeping ones, relative to it."""
        found: set[str] = set()
        for folder, dirs, files in os.walk(self.path):
            for name in dirs + files:
                rel = (Path(folder) / name).relative_to(self.path).as_posix()
                if not BOOKKEEPING.search(rel):
                    found.add(rel)
        return found

    def systemctl_calls(self) -> list[str]:
        """The stand-in's log since the last call, then cleared."""
        log = self.file(f"{ROOT_TMP}/systemctl.log")
        calls = log.read_text().splitlines() if log.exists() else []
        log.unlink(missing_ok=True)
        self.transcript.note("systemctl calls: " + ("; ".join(calls) or "none"))
        return calls

    def pretend_systemd_runs(self, *, runs: bool) -> None:
        marker = self.file("/run/systemd/system")
        if runs:
            marker.mkdir(parents=True, exist_ok=True)
        else:
            # All of /run/systemd, which the test made: a running systemd's state (tmpfs on a host).
            inside = sorted(str(p.relative_to(self.path)) for p in marker.parent.rglob("*"))
            self.transcript.note("in /run/systemd: " + ", ".join(inside))
            shutil.rmtree(marker.parent)
        self.transcript.note(f"/run/systemd/system {'present: systemd runs' if runs else 'absent'}")


@dataclass
class Built:
    """The packages of one build: release 1 and release 2 of the same version."""

    deb: dict[int, Path]
    rpm: dict[int, Path]
    seconds: float


def _build(outdir: Path, release: int) -> None:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    result = subprocess.run(
        ["bash", str(REPO / "packaging/build"), "--release", str(release), str(outdir)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env=env,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _depends(deb: Path) -> list[str]:
    """The .deb's Depends as package names, the first of each set of alternatives."""
    field_text = subprocess.run(
        ["dpkg-deb", "-f", str(deb), "Depends"], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    return [re.split(r"[\s(]", item.split("|")[0].strip())[0] for item in field_text.split(",")]


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Built:
    if os.geteuid() != 0:
        pytest.skip("installs packages into a root made with mmdebstrap and chroot: run as root (tests/run)")
    outdir = tmp_path_factory.mktemp("packages")
    deb_arch, rpm_arch = _arch()
    started = time.monotonic()
    for release in (1, 2):
        _build(outdir, release)
    return Built(
        deb={r: outdir / f"gpuwatch_{VERSION}-{r}_{deb_arch}.deb" for r in (1, 2)},
        rpm={r: outdir / f"gpuwatch-{VERSION}-{r}.{rpm_arch}.rpm" for r in (1, 2)},
        seconds=time.monotonic() - started,
    )


@pytest.fixture(scope="module")
def extracted(built, tmp_path_factory) -> Path:
    tree = tmp_path_factory.mktemp("deb-tree")
    subprocess.run(["dpkg-deb", "-x", str(built.deb[1]), str(tree)], check=True, timeout=120)
    return tree


def _deb_field(deb: Path, name: str) -> str:
    return subprocess.run(
        ["dpkg-deb", "-f", str(deb), name], capture_output=True, text=True, check=True, timeout=60
    ).stdout.strip()


def _rpm_query(rpm: Path, *args: str) -> str:
    return subprocess.run(
        [_tool("rpm"), "-qp", *args, str(rpm)], capture_output=True, text=True, check=True, timeout=60
    ).stdout


# ---------------------------------------------------------------------------------------------
# The .deb and the .rpm as files.


class TestDebFile:
    def test_named_and_versioned_from_the_project(self, built):
        assert built.deb[1].exists(), sorted(p.name for p in built.deb[1].parent.iterdir())
        assert _deb_field(built.deb[1], "Version") == f"{VERSION}-1"
        assert _deb_field(built.deb[2], "Version") == f"{VERSION}-2"
        assert _deb_field(built.deb[1], "Package") == "gpuwatch"

    def test_conffiles_are_the_two_settings_files(self, built, tmp_path):
        subprocess.run(
            ["dpkg-deb", "-e", str(built.deb[1]), str(tmp_path / "control")], check=True, timeout=60
        )
        assert set((tmp_path / "control/conffiles").read_text().split()) == CONFFILES

    def test_depends_on_the_interpreter_the_environment_links_to(self, built, extracted):
        links = [
            p for p in (extracted / "opt/gpuwatch/bin").iterdir() if re.fullmatch(r"python3\.\d+", p.name)
        ]
        assert len(links) == 1, links
        target = str(links[0].readlink())
        assert target == f"/usr/bin/{links[0].name}"
        depends = _depends(built.deb[1])
        assert links[0].name in depends
        assert "procps" in depends  # /bin/kill, the unit's ExecReload=
        assert "libc6" in depends  # (>= the glibc floor of the bundled wheels)
        shebang = (extracted / "opt/gpuwatch/bin/gpuwatch").read_text().splitlines()[0]
        assert shebang == "#!/opt/gpuwatch/bin/python"

    def test_systemd_files_are_the_repos_own(self, extracted):
        assert (extracted / UNIT.lstrip("/")).read_bytes() == (REPO / "systemd/gpuwatch.service").read_bytes()
        assert (extracted / "usr/lib/sysusers.d/gpuwatch.conf").read_bytes() == (
            REPO / "systemd/gpuwatch.sysusers"
        ).read_bytes()
        assert (extracted / "etc/default/gpuwatch").read_bytes() == (
            REPO / "systemd/gpuwatch.default"
        ).read_bytes()
        assert (extracted / "etc/gpuwatch/gpuwatch.toml").read_bytes() == (
            REPO / "packaging/gpuwatch.toml"
        ).read_bytes()

    def test_carries_changelog_licence_docs_and_completion(self, extracted):
        doc = extracted / "usr/share/doc/gpuwatch"
        assert {"README.md", "operations.md", "copyright", "changelog.Debian.gz"} <= {
            p.name for p in doc.iterdir()
        }
        copyright_text = (doc / "copyright").read_text()
        assert "License: Apache-2.0" in copyright_text
        for bundled in ("psutil", "uvloop", "httptools", "bcrypt", "PyYAML", "click"):
            assert re.search(rf"^  {bundled} \S+: \S", copyright_text, re.MULTILINE), bundled
        changelog = subprocess.run(
            ["zcat", str(doc / "changelog.Debian.gz")], capture_output=True, text=True, check=True, timeout=60
        ).stdout
        assert changelog.startswith(f"gpuwatch ({VERSION})")
        completion = (extracted / "usr/share/bash-completion/completions/gpuwatch").read_text()
        assert "_GPUWATCH_COMPLETE=bash_complete" in completion
        assert (extracted / "usr/share/zsh/vendor-completions/_gpuwatch").exists()
        assert (extracted / "usr/share/fish/vendor_completions.d/gpuwatch.fish").exists()

    def test_no_build_tool_and_no_build_path_inside(self, extracted):
        site = next((extracted / "opt/gpuwatch/lib").glob("python3.*/site-packages"))
        names = {p.name.split("-")[0].lower() for p in site.glob("*.dist-info")}
        assert {"gpuwatch", "psutil", "uvloop", "httptools", "bcrypt", "pyyaml"} <= names
        assert not names & {"pip", "setuptools"}
        needle = str(REPO).encode()
        named = [
            p for p in extracted.rglob("*") if p.is_file() and not p.is_symlink() and needle in p.read_bytes()
        ]
        assert named == []


class TestRpmFile:
    def test_named_versioned_and_requires(self, built):
        rpm = built.rpm[1]
        assert _rpm_query(rpm, "--qf", "%{NAME} %{VERSION} %{RELEASE}") == f"gpuwatch {VERSION} 1"
        requires = set(_rpm_query(rpm, "--requires").split("\n"))
        python = next(name for name in _depends(built.deb[1]) if name.startswith("python3."))
        assert {python, "systemd", "/usr/bin/kill"} <= requires
        # The glibc floor of the bundled wheels (bcrypt's manylinux_2_34 today): RHEL 9, not 8.
        assert [need for need in requires if re.fullmatch(r"libc\.so\.6\(GLIBC_2\.\d+\)\(64bit\)", need)]

    def test_file_list_and_config_files(self, built):
        files = set(_rpm_query(built.rpm[1], "-l").split())
        assert {
            "/opt/gpuwatch/bin/gpuwatch",
            "/usr/bin/gpuwatch",
            UNIT,
            "/usr/lib/sysusers.d/gpuwatch.conf",
            "/usr/lib/systemd/system-preset/90-gpuwatch.preset",
            "/usr/share/bash-completion/completions/gpuwatch",
            "/usr/share/licenses/gpuwatch/LICENSE",
            *CONFFILES,
        } <= files
        # Everything under the package's own prefixes: nothing strays into the system's folders.
        allowed = ("/opt/gpuwatch", "/etc/gpuwatch", "/etc/default/gpuwatch", "/usr/")
        assert [f for f in files if not f.startswith(allowed)] == []
        assert set(_rpm_query(built.rpm[1], "--configfiles").split()) == CONFFILES
        # %config(noreplace): an edited file is kept on an upgrade (flags from the header).
        flags = _rpm_query(built.rpm[1], "--qf", "[%{FILENAMES} %{FILEFLAGS:fflags}\n]")
        for conffile in CONFFILES:
            assert re.search(rf"^{re.escape(conffile)} \S*c\S*n", flags, re.MULTILINE), flags

    def test_scripts_create_the_user_and_enable_disable_the_unit(self, built):
        scripts = _rpm_query(built.rpm[1], "--scripts")
        post = scripts.split("postinstall scriptlet")[1].split("scriptlet")[0]
        assert "systemd-sysusers gpuwatch.conf" in post
        assert "systemctl --no-reload preset gpuwatch.service" in post
        assert "[ -d /run/systemd/system ]" in post
        preun = scripts.split("preuninstall scriptlet")[1].split("scriptlet")[0]
        assert "disable gpuwatch.service" in preun

    def test_unit_is_the_repos_own(self, built):
        with built.rpm[1].open("rb") as package:
            archive = subprocess.run(
                [_tool("rpm2archive"), "-"], stdin=package, capture_output=True, check=True, timeout=120
            ).stdout
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            member = tar.extractfile("." + UNIT)
            assert member is not None
            assert member.read() == (REPO / "systemd/gpuwatch.service").read_bytes()


# ---------------------------------------------------------------------------------------------
# Installed for real.


@dataclass
class Step:
    """What one step of a package's life left in the root."""

    systemctl: list[str] = field(default_factory=list)
    facts: dict[str, object] = field(default_factory=dict)


@dataclass
class Lifecycle:
    deb: dict[str, Step]
    rpm: dict[str, Step]
    transcript: Transcript
    seconds: dict[str, float]


def _make_root(root: Root, depends: list[str]) -> None:
    codename = re.search(
        r"^VERSION_CODENAME=(\w+)$", Path("/etc/os-release").read_text(), re.MULTILINE
    ).group(1)
    root.transcript.note(f"a fresh Debian {codename} root from Debian's packages: the .deb's dependencies")
    root.host(
        [
            _tool("mmdebstrap"),
            "--quiet",
            "--variant=apt",
            "--include=" + ",".join(depends),
            '--aptopt=Dpkg::Use-Pty "0"',
            codename,
            str(root.path),
            DEBIAN_MIRROR,
        ],
        timeout=600,
    )
    systemctl = root.file("/usr/bin/systemctl")
    systemctl.rename(root.file("/usr/bin/systemctl.real"))
    systemctl.write_text(SYSTEMCTL_STAND_IN)
    systemctl.chmod(0o755)


def _installed_facts(root: Root, step: Step) -> None:
    """What an installed gpuwatch looks like: its user, unit, programs and enablement."""
    facts = step.facts
    facts["passwd"] = root.run(["getent", "passwd", "gpuwatch"], check=False).stdout.strip()
    facts["groups"] = root.run(["id", "-nG", "gpuwatch"], check=False).stdout.split()
    facts["unit"] = root.file(UNIT).read_bytes() if root.file(UNIT).exists() else b""
    facts["verify"] = root.run(["systemd-analyze", "verify", "--man=no", UNIT], check=False)
    facts["security"] = root.run(
        ["systemd-analyze", "security", "--offline=true", "--no-pager", UNIT], check=False, keep="Overall"
    )
    facts["version"] = root.run(["gpuwatch", "--version"], user="gpuwatch", check=False)
    facts["status"] = root.run(["gpuwatch", "status", "--source", "sim:2xH100"], user="gpuwatch", check=False)
    facts["check"] = root.run(
        ["gpuwatch", "check", "--config", "/etc/gpuwatch/gpuwatch.toml"], user="gpuwatch", check=False
    )
    wants = root.path / WANTS
    facts["wants"] = str(wants.readlink()) if wants.is_symlink() else None
    # The real systemctl (the stand-in would log the test's own question among the scripts').
    facts["is_enabled"] = root.run(
        ["systemctl.real", "is-enabled", "gpuwatch.service"], check=False
    ).stdout.strip()
    facts["completion"] = root.run(
        [
            "bash",
            "-c",
            COMPLETE_STA,
        ],
        check=False,
    ).stdout.split()


def _edit_settings(root: Root) -> tuple[str, str]:
    """An admin's edits to both conffiles; returns their new texts."""
    toml = root.file("/etc/gpuwatch/gpuwatch.toml")
    toml.write_text(toml.read_text().replace('#level = "info"', 'level = "debug"'))
    default = root.file("/etc/default/gpuwatch")
    default.write_text(default.read_text().replace("#GPUWATCH_INTERVAL=1", "GPUWATCH_INTERVAL=2"))
    root.transcript.note('edited: gpuwatch.toml level = "debug"; /etc/default/gpuwatch GPUWATCH_INTERVAL=2')
    root.run(["gpuwatch", "check", "--config", "/etc/gpuwatch/gpuwatch.toml"], user="gpuwatch")
    return toml.read_text(), default.read_text()


def _upgraded_facts(root: Root, step: Step, edited: tuple[str, str]) -> None:
    step.facts["toml_kept"] = root.file("/etc/gpuwatch/gpuwatch.toml").read_text() == edited[0]
    step.facts["default_kept"] = root.file("/etc/default/gpuwatch").read_text() == edited[1]
    step.facts["etc_gpuwatch"] = sorted(p.name for p in root.file("/etc/gpuwatch").iterdir())
    step.facts["version"] = root.run(["gpuwatch", "--version"], user="gpuwatch", check=False)


def _deb_life(root: Root, built: Built) -> dict[str, Step]:
    steps = {name: Step() for name in ("install", "upgrade", "remove", "purge")}
    apt = ["apt-get", "-y", "-q", "-o", "Dpkg::Use-Pty=0"]
    for release in (1, 2):
        shutil.copy(built.deb[release], root.file(f"{ROOT_TMP}/{built.deb[release].name}"))
    before = root.snapshot()

    root.transcript.note("install (no systemd running: a chroot)")
    root.run([*apt, "install", f"{ROOT_TMP}/{built.deb[1].name}"])
    steps["install"].systemctl = root.systemctl_calls()
    _installed_facts(root, steps["install"])
    edited = _edit_settings(root)

    root.pretend_systemd_runs(runs=True)
    root.transcript.note("upgrade to release 2 (systemd running)")
    root.run([*apt, "install", f"{ROOT_TMP}/{built.deb[2].name}"])
    steps["upgrade"].systemctl = root.systemctl_calls()
    _upgraded_facts(root, steps["upgrade"], edited)
    steps["upgrade"].facts["dpkg"] = root.run(["dpkg-query", "-W", "gpuwatch"]).stdout.split()

    root.transcript.note("remove")
    root.run([*apt, "remove", "gpuwatch"])
    steps["remove"].systemctl = root.systemctl_calls()
    steps["remove"].facts["status"] = root.run(
        ["dpkg-query", "-W", "-f=${db:Status-Abbrev}", "gpuwatch"], check=False
    ).stdout.strip()
    steps["remove"].facts["left"] = sorted(root.snapshot() - before)

    root.transcript.note("purge")
    root.run([*apt, "purge", "gpuwatch"])
    steps["purge"].systemctl = root.systemctl_calls()
    steps["purge"].facts["left"] = _left_after(root, before, "purge")
    steps["purge"].facts["passwd"] = root.run(["getent", "passwd", "gpuwatch"], check=False).stdout.strip()
    return steps


def _left_after(root: Root, before: set[str], removal: str) -> list[str]:
    """What the root holds after `removal` that it did not before the install, noted in the transcript."""
    root.pretend_systemd_runs(runs=False)
    left = sorted(root.snapshot() - before)
    root.transcript.note(f"left after {removal}, beside bookkeeping: " + (", ".join(left) or "nothing"))
    return left


def _satisfied(root: Root, need: str) -> bool:
    """Whether the root has what an .rpm requirement names, asked of Debian's tools."""
    if need.startswith("/"):
        return root.file(need).exists()
    if glibc := re.fullmatch(r"libc\.so\.6\(GLIBC_(\d+)\.(\d+)\)\(64bit\)", need):
        have = root.run(["getconf", "GNU_LIBC_VERSION"]).stdout.split()[1]  # "glibc 2.36"
        return tuple(int(part) for part in have.split(".")) >= (int(glibc[1]), int(glibc[2]))
    return root.run(["dpkg-query", "-W", need], check=False).returncode == 0


def _rpm_life(root: Root, built: Built) -> dict[str, Step]:
    steps = {name: Step() for name in ("install", "upgrade", "erase")}
    # rpm --root keeps its own database in the root, empty of Debian's packages: --nodeps, as the
    # .rpm's requirements are checked against the root's dpkg database instead (test below).
    rpm = [_tool("rpm"), "--root", str(root.path)]
    root.transcript.note("the .rpm in the same root; the .deb's user removed first, for %post to create")
    root.run(["userdel", "gpuwatch"])
    root.host([*rpm, "--initdb"])
    # Folders the RHEL family's `filesystem` package owns, so the .rpm leaves them to it.
    for folder in ("/opt", "/usr/share/licenses"):
        root.file(folder).mkdir(exist_ok=True)
    before = root.snapshot()
    requires = _rpm_query(built.rpm[1], "--requires").splitlines()
    steps["install"].facts["requirements"] = {
        need: _satisfied(root, need) for need in requires if not need.startswith("rpmlib(")
    }

    root.transcript.note("rpm install (no systemd running)")
    root.host([*rpm, "-i", "--nodeps", str(built.rpm[1])])
    steps["install"].systemctl = root.systemctl_calls()
    _installed_facts(root, steps["install"])
    steps["install"].facts["rpm_verify"] = root.host([*rpm, "-V", "--nodeps", "gpuwatch"], check=False)
    edited = _edit_settings(root)

    root.pretend_systemd_runs(runs=True)
    root.transcript.note("rpm upgrade to release 2 (systemd running)")
    root.host([*rpm, "-U", "--nodeps", str(built.rpm[2])])
    steps["upgrade"].systemctl = root.systemctl_calls()
    _upgraded_facts(root, steps["upgrade"], edited)
    steps["upgrade"].facts["rpm"] = root.host([*rpm, "-q", "gpuwatch"]).stdout.strip()

    root.transcript.note("rpm erase")
    root.host([*rpm, "-e", "gpuwatch"])
    steps["erase"].systemctl = root.systemctl_calls()
    steps["erase"].facts["left"] = _left_after(root, before, "erase")
    return steps


@pytest.fixture(scope="module")
def lifecycle(built, tmp_path_factory) -> Lifecycle:
    transcript = Transcript()
    root = Root(tmp_path_factory.mktemp("debian") / "root", transcript)
    seconds: dict[str, float] = {"build": built.seconds}
    started = time.monotonic()
    try:
        _make_root(root, _depends(built.deb[1]))
        seconds["root"] = time.monotonic() - started
        started = time.monotonic()
        deb = _deb_life(root, built)
        seconds["deb"] = time.monotonic() - started
        started = time.monotonic()
        rpm = _rpm_life(root, built)
        seconds["rpm"] = time.monotonic() - started
        transcript.note("seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in seconds.items()))
    finally:
        if keep := os.environ.get("GPUWATCH_PACKAGE_TRANSCRIPT"):
            Path(keep).write_text(transcript.text())
        # A root is some 300 MB: not kept past the module.
        shutil.rmtree(root.path, ignore_errors=True)
    return Lifecycle(deb, rpm, transcript, seconds)


def _called(step: Step, request: str) -> bool:
    """Whether a maintainer script asked systemctl for `request` (e.g. `stop gpuwatch.service`)."""
    return any(call.endswith(f" {request}") for call in step.systemctl)


def _assert_installed(step: Step, transcript: Transcript) -> None:
    facts = step.facts
    name, _, uid, _, _, home, shell = str(facts["passwd"]).split(":")
    assert 0 < int(uid) < 1000, facts["passwd"]  # a system user
    assert (name, home, shell) == ("gpuwatch", "/", "/usr/sbin/nologin")
    assert "video" in facts["groups"]  # Debian has the group: the user is in it
    assert facts["unit"] == (REPO / "systemd/gpuwatch.service").read_bytes()
    verify = facts["verify"]
    assert verify.returncode == 0, verify.stderr
    assert verify.stderr.strip() == ""
    found = re.search(r"Overall exposure level for gpuwatch\.service: (\d+\.\d+)", facts["security"].stdout)
    assert found, facts["security"].stdout + facts["security"].stderr
    assert float(found.group(1)) <= MAX_EXPOSURE
    assert facts["version"].returncode == 0
    assert facts["version"].stdout.strip() == f"gpuwatch, version {VERSION}"
    status = facts["status"]
    assert status.returncode == 0, status.stdout + status.stderr
    assert len(re.findall(r"^\d+\s+NVIDIA H100", status.stdout, re.MULTILINE)) == 2, status.stdout
    assert facts["check"].returncode == 0, facts["check"].stdout + facts["check"].stderr
    assert "all valid" in facts["check"].stdout
    # Enabled for the next boot, even in a chroot; nothing started, as no systemd runs.
    assert facts["wants"] is not None, transcript.text()
    assert facts["wants"].endswith("/systemd/system/gpuwatch.service")
    assert facts["is_enabled"] == "enabled"
    assert not [call for call in step.systemctl if re.search(r"\b(start|restart|daemon-reload)\b", call)]
    assert "status" in facts["completion"]


class TestDebInstalled:
    def test_install_creates_the_user_and_enables_the_unit_it_checks(self, lifecycle):
        _assert_installed(lifecycle.deb["install"], lifecycle.transcript)

    def test_upgrade_keeps_edited_settings_and_restarts(self, lifecycle):
        step = lifecycle.deb["upgrade"]
        assert step.facts["dpkg"] == ["gpuwatch", f"{VERSION}-2"]
        assert step.facts["toml_kept"]
        assert step.facts["default_kept"]
        assert step.facts["etc_gpuwatch"] == ["gpuwatch.toml"]  # no .dpkg-dist: nothing to merge
        assert step.facts["version"].returncode == 0
        assert "systemctl --system daemon-reload" in step.systemctl
        assert _called(step, "restart gpuwatch.service"), step.systemctl

    def test_remove_stops_and_disables_and_keeps_the_settings(self, lifecycle):
        step = lifecycle.deb["remove"]
        assert _called(step, "stop gpuwatch.service"), step.systemctl
        assert step.facts["status"] == "rc"  # removed, its conffiles kept: Debian's remove
        # Beside dpkg's record of the removed package (var/lib/dpkg/info/gpuwatch.*), which the
        # purge takes, only the conffiles: no unit, no enable link, no /opt/gpuwatch.
        left = [path for path in step.facts["left"] if not path.startswith("var/lib/dpkg/")]
        assert left == ["etc/default/gpuwatch", "etc/gpuwatch", "etc/gpuwatch/gpuwatch.toml"]

    def test_purge_leaves_nothing_but_the_user(self, lifecycle):
        step = lifecycle.deb["purge"]
        assert step.facts["left"] == []
        # Debian's convention: a system user stays, so that files it owned never pass to a new user.
        assert step.facts["passwd"].startswith("gpuwatch:")


class TestRpmInstalled:
    def test_requirements_are_in_the_root(self, lifecycle, built):
        # What --nodeps skipped, checked against the root's dpkg database and files instead
        # (Debian's names match the .rpm's here: python3.X and systemd; /usr/bin/kill is a file).
        requirements = lifecycle.rpm["install"].facts["requirements"]
        python = next(name for name in _depends(built.deb[1]) if name.startswith("python3."))
        glibc = next(need for need in requirements if need.startswith("libc.so.6(GLIBC_"))
        assert requirements == {python: True, glibc: True, "systemd": True, "/usr/bin/kill": True}

    def test_install_creates_the_user_and_enables_the_unit_it_checks(self, lifecycle):
        step = lifecycle.rpm["install"]
        _assert_installed(step, lifecycle.transcript)
        assert step.facts["rpm_verify"].stdout == "", step.facts["rpm_verify"].stdout
        assert any("preset gpuwatch.service" in call for call in step.systemctl), step.systemctl

    def test_upgrade_keeps_edited_settings_and_restarts(self, lifecycle):
        step = lifecycle.rpm["upgrade"]
        assert step.facts["rpm"] == f"gpuwatch-{VERSION}-2.{_arch()[1]}"
        assert step.facts["toml_kept"]
        assert step.facts["default_kept"]
        assert step.facts["etc_gpuwatch"] == ["gpuwatch.toml"]  # no .rpmnew: nothing to merge
        assert _called(step, "try-restart gpuwatch.service"), step.systemctl

    def test_erase_disables_stops_and_keeps_only_the_edited_settings(self, lifecycle):
        step = lifecycle.rpm["erase"]
        assert _called(step, "disable gpuwatch.service"), step.systemctl
        assert _called(step, "stop gpuwatch.service"), step.systemctl
        # rpm has no purge: edited %config files are kept as .rpmsave, and so their folder.
        assert step.facts["left"] == [
            "etc/default/gpuwatch.rpmsave",
            "etc/gpuwatch",
            "etc/gpuwatch/gpuwatch.toml.rpmsave",
        ]


def test_example_settings_are_all_valid_uncommented(tmp_path):
    """Every `#key = value` of the shipped gpuwatch.toml, uncommented, is a setting serve accepts."""
    text = (REPO / "packaging/gpuwatch.toml").read_text()
    web_config = tmp_path / "web.yml"
    web_config.write_text("")
    uncommented, count = re.subn(r"(?m)^#([a-z_]+ = )", r"\1", text)
    assert count >= 15
    settings = tmp_path / "gpuwatch.toml"
    settings.write_text(uncommented.replace("/etc/gpuwatch/web.yml", str(web_config)))
    settings.chmod(0o600)
    result = subprocess.run(
        [sys.executable, "-m", "gpuwatch", "check", "--config", str(settings)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{count} settings, all valid" in result.stdout
