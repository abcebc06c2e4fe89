"""How fast `runner validate` is: files per second on one core, and the cold start on one file.

    python bench/validate.py [--files 1000] [--repeat 3]

Generates N realistic workflows (inputs, two models, four agents with templated system prompts, six to nine
stages with listed branches, a for_each pipeline and templates reading earlier stages; 60-90 lines each) in a
temporary folder, then measures, pinned to one CPU where the OS allows it:

- in process: ``check_paths`` over the folder, after one warm-up file (files/s, ms per file);
- a subprocess ``runner validate FOLDER`` (interpreter start, imports and all N files);
- the cold start: a subprocess ``runner validate workflows/quickstart.yaml``, best and median of 15.

Targets (issue 3): one file in under 0.3 s including interpreter start; 1,000 files in under 5 s.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def workflow(i: int, rng: random.Random) -> str:
    perspectives = rng.sample(["cost", "latency", "reliability", "security", "ergonomics", "scale"], 3)
    n_extra = rng.randint(2, 5)
    extra = "".join(
        f"  - id: step{j}\n    agent: {rng.choice(['editor', 'critic'])}\n"
        f'    input: "Improve: {{{{ prev.content }}}} (round {j} of {{{{ inputs.rounds }}}})"\n'
        for j in range(n_extra)
    )
    return f"""\
# yaml-language-server: $schema=../schemas/workflow.schema.json
version: 1
name: generated-{i}
description: Generated workflow {i} for the validation benchmark.

inputs:
  topic: {{type: string, default: "workflow {i} and its trade-offs"}}
  perspectives: {{type: array, items: string, default: {perspectives}}}
  rounds: {{type: integer, default: {rng.randint(1, 5)}}}

models:
  fast:
    provider: scripted
    reply: "{{{{ agent.name }}}} on {{{{ input | truncate(40) }}}}"
    latency: {{first_token_ms: {rng.randint(5, 50)}, tokens_per_second: 200}}
  careful:
    provider: scripted
    reply: "{{{{ agent.name }}}} weighed {{{{ inputs.topic }}}} carefully."

agents:
  analyst:
    model: fast
    vars: {{depth: {rng.choice(["short", "deep"])}}}
    sys_prompt: "You analyse {{{{ inputs.topic }}}} for {{{{ vars.perspective }}}}, {{{{ vars.depth }}}}."
  drafter: {{model: fast, sys_prompt: "Draft an answer about {{{{ inputs.topic }}}}."}}
  editor: {{model: careful, sys_prompt: "You edit for clarity. Run {{{{ run.id }}}}."}}
  critic: {{model: careful, sys_prompt: "Find the weakest claim in {{{{ input | truncate(80) }}}}."}}

stages:
  - id: notes
    input: "Analyse {{{{ inputs.topic }}}} from the angle of {{{{ vars.perspective }}}}."
    fanout:
      for_each: "{{{{ inputs.perspectives }}}}"
      as: perspective
      agent: analyst
      max_concurrency: {rng.randint(2, 8)}
  - id: views
    input: "{{{{ inputs.topic }}}}"
    fanout:
      branches:
        - - {{id: draft, agent: drafter}}
          - {{id: check, agent: critic, input: "Check: {{{{ stages.draft.content }}}}"}}
        - - {{id: counter, agent: critic, input: "Argue against {{{{ inputs.topic }}}}"}}
  - id: per_note
    fanout:
      for_each: "{{{{ stages.notes }}}}"
      as: note
      stages:
        - {{id: shorten, agent: editor, input: "Shorten: {{{{ vars.note.content }}}}"}}
        - {{id: score, agent: critic, input: "{{{{ stages.shorten.content }}}} vs {{{{ stages.check.content }}}}"}}
  - id: digest
    agent: editor
    input: |
      Merge these notes:
      {{% for n in stages.notes %}}- {{{{ n.content }}}}
      {{% endfor %}}
      For: {{{{ stages.check.content }}}}
      Against: {{{{ stages.counter.content }}}}
      Scores: {{{{ stages.per_note | map(attribute='content') | join('; ') }}}}
{extra}
report: {{dir: reports}}
"""


def pin_one_core() -> str:
    if hasattr(os, "sched_setaffinity"):
        cpu = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpu})  # inherited by the subprocesses started below
        return f"pinned to CPU {cpu}"
    return "not pinned (no sched_setaffinity)"


def runner_command() -> list[str]:
    script = Path(sys.executable).with_name("runner")
    return [str(script)] if script.exists() else [sys.executable, "-m", "runner"]


def timed(cmd: list[str]) -> tuple[float, subprocess.CompletedProcess[str]]:
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
    return time.perf_counter() - start, proc


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    pinned = pin_one_core()
    folder = Path(tempfile.mkdtemp(prefix="runner-bench-validate-"))
    try:
        rng = random.Random(3)
        sizes = []
        for i in range(args.files):
            text = workflow(i, rng)
            sizes.append(text.count("\n"))
            (folder / f"wf{i:04d}.yaml").write_text(text, encoding="utf-8")
        from runner.commands.validate import check_paths

        problems, _ = check_paths([str(folder / "wf0000.yaml")])  # warm-up: imports, schema validator
        assert problems == [], [p.format_line() for p in problems]
        in_process = []
        for _ in range(args.repeat):
            start = time.perf_counter()
            problems, count = check_paths([str(folder)])
            in_process.append(time.perf_counter() - start)
            assert count == args.files and problems == [], [p.format_line() for p in problems[:5]]
        folder_runs = []
        for _ in range(args.repeat):
            elapsed, proc = timed([*runner_command(), "validate", str(folder)])
            assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
            folder_runs.append(elapsed)
        cold = []
        for _ in range(15):
            elapsed, proc = timed([*runner_command(), "validate", "workflows/quickstart.yaml"])
            assert proc.returncode == 0, proc.stdout + proc.stderr
            cold.append(elapsed)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    best = min(in_process)
    print(
        f"python {sys.version.split()[0]}, {pinned}; {args.files} generated workflows, "
        f"{min(sizes)}-{max(sizes)} lines each"
    )
    print()
    print("| measure | best | median | target |")
    print("|---|---|---|---|")
    print(
        f"| in process: {args.files} files | {best:.2f} s ({args.files / best:,.0f} files/s, "
        f"{best / args.files * 1000:.2f} ms/file) | {statistics.median(in_process):.2f} s | |"
    )
    print(
        f"| `runner validate FOLDER` ({args.files} files, subprocess) | {min(folder_runs):.2f} s | "
        f"{statistics.median(folder_runs):.2f} s | < 5 s |"
    )
    print(
        f"| `runner validate quickstart.yaml` (cold start) | {min(cold):.3f} s | {statistics.median(cold):.3f} s "
        "| < 0.3 s |"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
