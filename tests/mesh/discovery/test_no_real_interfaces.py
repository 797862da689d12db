"""Static guard: no test or benchmark may start mDNS on the host's default interfaces.

The runtime guard (:mod:`tests.mesh.discovery.guard`) covers the tests that use
it; this check covers every file under ``tests/`` and ``bench/``, whoever wrote
it: each construction of an mDNS user (``MdnsDiscovery``, ``LanNode``,
``AsyncZeroconf``, ``Zeroconf``) passes ``interfaces`` explicitly (literal
addresses must be loopback), and every ``--lan`` command line names an
``--interface``. Namespace tests pass namespace addresses through variables,
which is allowed: those addresses exist only inside the test's namespaces.
A line marked ``# mdns-guard: never started`` (a call that must be refused
before anything is bound, or an argument parser check) is exempt.
"""

from __future__ import annotations

import ast
import ipaddress
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
MDNS_USERS = {"MdnsDiscovery", "LanNode", "AsyncZeroconf", "Zeroconf"}


def _files() -> list[Path]:
    return sorted(p for folder in ("tests", "bench") for p in (ROOT / folder).rglob("*.py"))


def _name(func: ast.expr) -> str:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return ""


def _problems(path: Path) -> list[str]:
    source = path.read_text(encoding="utf-8")
    tree = ast.parse(source, filename=str(path))
    exempt = {
        number
        for number, line in enumerate(source.splitlines(), start=1)
        if "mdns-guard: never started" in line
    }
    problems: list[str] = []
    where = path.relative_to(ROOT)
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in exempt:
            continue
        if isinstance(node, ast.Call) and _name(node.func) in MDNS_USERS:
            keywords = {kw.arg: kw.value for kw in node.keywords}
            if "interfaces" not in keywords and None not in keywords:
                problems.append(f"{where}:{node.lineno}: {_name(node.func)} without interfaces=")
            value = keywords.get("interfaces")
            for const in ast.walk(value) if value is not None else ():
                if isinstance(const, ast.Constant) and isinstance(const.value, str):
                    if not ipaddress.ip_address(const.value).is_loopback:
                        problems.append(f"{where}:{node.lineno}: mDNS on {const.value}")
        if isinstance(node, ast.List | ast.Tuple | ast.Call):
            items = node.elts if isinstance(node, ast.List | ast.Tuple) else node.args
            texts = [e.value for e in items if isinstance(e, ast.Constant)]
            if "--lan" in texts and "--interface" not in texts:
                problems.append(f"{where}:{node.lineno}: --lan without --interface")
    return problems


def test_every_mdns_user_in_tests_names_its_interfaces() -> None:
    problems = [problem for path in _files() for problem in _problems(path)]
    assert problems == []


def test_the_check_catches_a_default_interface(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text(
        "LanNode(name='x', passphrase='y')\n"
        "MdnsDiscovery(peer_id='p', name='n', port=1, interfaces=['192.0.2.2'])\n"
        "run(['python', '-m', 'mesh', '--lan', '--name', 'x'])\n",
        encoding="utf-8",
    )
    global ROOT
    saved, ROOT = ROOT, tmp_path
    try:
        assert len(_problems(bad)) == 3
    finally:
        ROOT = saved
