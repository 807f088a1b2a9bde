#!/usr/bin/env python3
"""Ordering mutations: prove that the loom models can fail.

Finds every memory ordering written at an atomic call site in src/ (loads,
stores, read-modify-writes, compare-exchanges and fences), weakens each one in
turn, runs the loom models that cover that file, and reports per mutant
whether a model failed ("killed") or every model still passed ("survived").

Sites in code that loom never runs (the std side of the facade, the model's
own futex and liveness oracle) carry a `mutate: skip` comment with the reason
and are not counted.

A survivor is either a gap in the models (write a better one) or harmless,
because another pairing still orders the access, or hidden by a limit of
loom. Harmless and hidden survivors are listed, with the reason, in
loom_tests/MUTATIONS.md; `--check` fails on a survivor that is not.

    python3 scripts/mutate.py --list               # the sites and mutants
    python3 scripts/mutate.py                      # every mutant (hours)
    python3 scripts/mutate.py --file src/lock      # one area
    python3 scripts/mutate.py --sample 3 --seed 7 --check   # what CI runs

The source file is restored after each mutant, also on Ctrl-C.
"""

import argparse
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LEDGER = ROOT / "loom_tests" / "MUTATIONS.md"

# Which loom runs cover which source files (the first matching prefix wins).
# Each run is (test target, extra libtest args, preemption bound), as in
# .ci/run.
# The spmc model takes about 100 s: `--quick` leaves out runs marked slow.
# The registry models first: small, and the first failure stops the rest.
RING = [("loom_ring_registry", [], 3),
        ("loom_ring", ["--skip", "spmc"], 3), ("loom_ring_death", [], 3),
        ("loom_ring_sole", [], 3),
        ("loom_ring", ["spmc"], 2, "slow")]
MAP_LIST = [("loom_manager", [], 3)]
LOCK = [("loom_lock", [], 3)]
RING_DEATH = [("loom_ring_death", [], 3)]
CELL = [("loom_cell", [], 3)]
HEADER = [("loom_header", [], 3)]
# The registry models first: small, and the first failure stops the rest.
# Only the items' 1P2C model is slow (about 30 s); the bytes 1P2C model
# (under 2 s) is the only one that kills the consumer's head load and head
# CAS, so the skip names the slow model whole (a bare `one_producer_two`
# would skip both).
QUEUE_SLOW = "one_producer_two_consumers_wraparound"
QUEUE = [("loom_queue_registry", [], 2), ("loom_queue_sole", [], 2),
         ("loom_queue", ["--skip", QUEUE_SLOW], 2),
         ("loom_queue", [QUEUE_SLOW], 2, "slow")]
SNAPSHOT = [("loom_snapshot", [], 3)]
COVER = [
    ("src/ring/", RING),
    ("src/queue", QUEUE),
    ("src/lock", LOCK),
    ("src/map.rs", MAP_LIST),
    ("src/list.rs", MAP_LIST),
    ("src/cell.rs", CELL),
    ("src/header.rs", HEADER),
    ("src/snapshot.rs", SNAPSHOT),
    ("src/slot.rs", RING + MAP_LIST),
    ("src/event.rs", RING),
    ("src/sole.rs", RING + QUEUE),
    ("src/sync.rs", CELL + HEADER + RING + MAP_LIST + LOCK + QUEUE),
]

ORDER_RE = re.compile(r"Ordering::(SeqCst|AcqRel|Acquire|Release|Relaxed)\b")
CALL_RE = re.compile(r"(?:\.|\b)([A-Za-z_][A-Za-z0-9_]*)\s*$")


def weaker(op, order):
    """The mutants of one ordering argument, by the operation it orders."""
    table = {
        "load": {"SeqCst": ["Acquire"], "Acquire": ["Relaxed"]},
        "store": {"SeqCst": ["Release"], "Release": ["Relaxed"]},
        "rmw": {
            "SeqCst": ["AcqRel"],
            "AcqRel": ["Acquire", "Release"],
            "Acquire": ["Relaxed"],
            "Release": ["Relaxed"],
        },
        # A failed compare-exchange is a load: never Release or AcqRel.
        "cas_fail": {"SeqCst": ["Acquire"], "Acquire": ["Relaxed"]},
        "fence": {"SeqCst": ["AcqRel", "(none)"], "AcqRel": ["(none)"],
                  "Acquire": ["(none)"], "Release": ["(none)"]},
    }
    return table.get(op, {}).get(order, [])


# The facade's fences: the plain one and the two halves of the asymmetric
# pair (sync::fence_light / fence_heavy), each a fence in the models.
FENCES = ("fence", "fence_light", "fence_heavy")

RMW = {"swap", "fetch_add", "fetch_sub", "fetch_or", "fetch_and", "fetch_xor",
       "fetch_max", "fetch_min", "fetch_update", "fetch_nand"}


def classify(text, pos):
    """The operation whose argument list holds position `pos`, and the
    argument's index: walk back to the innermost unclosed '('."""
    depth, commas, i = 0, 0, pos - 1
    while i >= 0:
        c = text[i]
        if c == ")":
            depth += 1
        elif c == "(":
            if depth == 0:
                break
            depth -= 1
        elif c == "," and depth == 0:
            commas += 1
        elif c in ";{}" and depth == 0:
            return None, 0
        i -= 1
    if i < 0:
        return None, 0
    m = CALL_RE.search(text[max(0, i - 80):i])
    if not m:
        return None, 0
    name = m.group(1)
    if name == "load":
        return "load", commas
    if name == "store":
        return "store", commas
    if name in RMW:
        return "rmw", commas
    if name in ("compare_exchange", "compare_exchange_weak"):
        return ("rmw" if commas == 2 else "cas_fail"), commas
    if name in FENCES:
        return "fence", commas
    return None, commas


def production_span(text):
    """Offsets outside unit-test modules (`#[cfg(test)] mod ... {` to the
    end of the file: our test modules sit at the end)."""
    m = re.search(r"#\[cfg\(test\)\]\s*mod\s+\w+", text)
    return len(text) if m is None else m.start()


def covering(path):
    for prefix, runs in COVER:
        if path.startswith(prefix):
            return runs
    return None


def sites(only=None):
    """Every mutant: dicts with file, offset, line, snippet, key, runs."""
    out = []
    for f in sorted((ROOT / "src").rglob("*.rs")):
        rel = f.relative_to(ROOT).as_posix()
        if only and not any(rel.startswith(o) for o in only):
            continue
        runs = covering(rel)
        if runs is None:
            continue
        text = f.read_text()
        end = production_span(text)
        for m in ORDER_RE.finditer(text, 0, end):
            line_start = text.rfind("\n", 0, m.start()) + 1
            line_end = text.find("\n", m.start())
            line = text[line_start:line_end]
            if line.lstrip().startswith("//") or "//" in text[line_start:m.start()]:
                continue
            # Code that loom never runs (the std side of the facade, the
            # model's own machinery) says so with `mutate: skip` on the line
            # or the line before it, and why.
            prev_start = text.rfind("\n", 0, max(0, line_start - 1)) + 1
            if "mutate: skip" in text[prev_start:line_end]:
                continue
            op, arg = classify(text, m.start())
            order = m.group(1)
            # A `|` in code is escaped, so that the key is one Markdown
            # table cell in MUTATIONS.md.
            snippet = " ".join(line.split()).replace("|", "\\|")
            # The n-th ordering on this line (a CAS has two).
            nth = len(ORDER_RE.findall(text[line_start:m.start()]))
            fns = re.findall(r"\bfn\s+([A-Za-z0-9_]+)", text[:m.start()])
            where = f"{rel}::{fns[-1]}" if fns else rel
            for to in weaker(op, order):
                out.append({
                    "file": rel,
                    "start": m.start(),
                    "end": m.end(),
                    "line": text.count("\n", 0, m.start()) + 1,
                    "snippet": snippet,
                    "from": order,
                    "to": to,
                    "op": op,
                    "key": f"{where} | `{snippet}` #{nth} | {order} -> {to}",
                    "runs": runs,
                })
    # Two sites with the same function, line text and position (two equal
    # fences in one function) get an occurrence number.
    seen = {}
    for s in out:
        n = seen.get(s["key"], 0)
        seen[s["key"]] = n + 1
        if n:
            s["key"] = s["key"].replace(" | ", f" ({n + 1}) | ", 1)
    return out


def mutate_text(text, s):
    if s["to"] != "(none)":
        return text[:s["start"]] + "Ordering::" + s["to"] + text[s["end"]:]
    # Remove the whole `fence(Ordering::X)` call (or an asymmetric half's),
    # keeping the statement.
    call = max(text.rfind(f + "(", 0, s["start"]) for f in FENCES)
    close = text.find(")", s["end"])
    return text[:call] + "()" + text[close + 1:]


def ledger_keys():
    """Survivors accepted in MUTATIONS.md: table rows whose first three
    cells are file, code and mutation, as `--list` prints them."""
    keys = set()
    if not LEDGER.exists():
        return keys
    for row in LEDGER.read_text().splitlines():
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", row.strip().strip("|"))]
        if len(cells) >= 4 and cells[0].startswith("src/"):
            keys.add(" | ".join(cells[:3]))
    return keys


def build(target, target_dir, env):
    """Build one loom test target; its executable, or None on a compile
    error."""
    cmd = ["cargo", "test", "--release", "-q", "--no-run", "--message-format=json",
           "--target-dir", target_dir, "--test", target]
    p = subprocess.run(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                       stderr=subprocess.DEVNULL)
    if p.returncode != 0:
        return None
    exe = None
    for line in p.stdout.decode(errors="replace").splitlines():
        try:
            msg = json.loads(line)
        except ValueError:
            continue
        if msg.get("reason") == "compiler-artifact" and msg.get("executable") \
                and msg.get("target", {}).get("name") == target:
            exe = msg["executable"]
    return exe


def list_tests(exe, args, env):
    """The test names a libtest filter (`args`) selects in `exe`."""
    p = subprocess.run([exe, "--list", "--format", "terse"] + args, cwd=ROOT, env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    return [line[:-len(": test")] for line in p.stdout.decode().splitlines()
            if line.endswith(": test")]


def run_models(runs, target_dir, timeout, env, jobs=2, only=None):
    """Run the loom runs; return (verdict, detail): 'passed', 'failed' (the
    detail names the model that failed), 'timeout' or 'compile-error'.

    Fail-fast: each model (test function) runs as its own process, `jobs`
    at a time, in the order of `runs`; the first failure stops the others,
    so a killed mutant costs the time of the model that kills it."""
    tasks = []
    for target, args, bound, *_ in runs:
        if not (ROOT / "loom_tests").exists():
            break
        exe = build(target, target_dir, env)
        if exe is None:
            return "compile-error", target
        e = dict(env, LOOM_MAX_PREEMPTIONS=str(bound))
        for name in list_tests(exe, args, e):
            if only and not any(o in f"{target}::{name}" for o in only):
                continue
            tasks.append((f"{target}::{name}", [exe, "--exact", name, "--test-threads", "1"], e))
    deadline = time.time() + timeout
    running = []  # (label, Popen)
    verdict, detail = "passed", ""

    def stop_all():
        for _, p in running:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait()

    try:
        while tasks or running:
            while tasks and len(running) < jobs:
                label, cmd, e = tasks.pop(0)
                running.append((label, subprocess.Popen(
                    cmd, cwd=ROOT, env=e, stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL, start_new_session=True)))
            if time.time() > deadline:
                verdict, detail = "timeout", ", ".join(lbl for lbl, _ in running)
                break
            for item in list(running):
                label, p = item
                rc = p.poll()
                if rc is None:
                    continue
                running.remove(item)
                if rc != 0:
                    verdict, detail = "failed", label
                    break
            if verdict != "passed":
                break
            time.sleep(0.2)
    finally:
        stop_all()
    return verdict, detail


def known_targets():
    text = (ROOT / "Cargo.toml").read_text()
    return set(re.findall(r'name\s*=\s*"(loom_[a-z_]+)"', text))


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--list", action="store_true", help="list the mutants and stop")
    ap.add_argument("--file", action="append",
                    help="only sites in files under this path prefix (repeatable)")
    ap.add_argument("--sample", type=int, help="run this many mutants, drawn at random")
    ap.add_argument("--seed", type=int, default=None, help="seed of --sample")
    ap.add_argument("--check", action="store_true",
                    help="exit 1 if a survivor is not listed in loom_tests/MUTATIONS.md")
    ap.add_argument("--at", action="append", metavar="FILE:LINE",
                    help="only the mutants of the site on this line (repeatable; "
                         "the line as --list prints it)")
    ap.add_argument("--timeout", type=int, default=900,
                    help="seconds the models of one mutant may take (default 900)")
    ap.add_argument("--model", action="append", metavar="NAME",
                    help="only the models whose target::test name contains NAME "
                         "(repeatable): which model kills a planted bug")
    ap.add_argument("--jobs", type=int, default=2,
                    help="models run at once (default 2); the first failure stops the rest")
    ap.add_argument("--target-dir", default="target/mutate")
    ap.add_argument("--no-baseline", action="store_true",
                    help="skip the run of the unmutated models (only right after they passed, as in CI)")
    ap.add_argument("--quick", action="store_true",
                    help="leave out the slow loom runs (the 3-thread SPMC model)")
    a = ap.parse_args()

    targets = known_targets()
    muts = sites(a.file)
    for s in muts:
        s["runs"] = [r for r in s["runs"] if r[0] in targets
                     and not (a.quick and "slow" in r[3:])]
    muts = [s for s in muts if s["runs"]]
    if a.at:
        want = set()
        for at in a.at:
            f, _, line = at.rpartition(":")
            if not f or not line.isdigit():
                ap.error(f"--at wants FILE:LINE, not {at!r}")
            want.add((f, int(line)))
        muts = [s for s in muts if (s["file"], s["line"]) in want]
        if not muts:
            ap.error("no mutation site on " + ", ".join(a.at) + " (see --list)")
    listed = ledger_keys()
    if a.list:
        for s in muts:
            tag = "  (listed)" if s["key"] in listed else ""
            print(f"{s['file']}:{s['line']}: {s['key']}{tag}")
        files = {s["file"] for s in muts}
        sites_n = len({(s["file"], s["start"]) for s in muts})
        print(f"{len(muts)} mutants at {sites_n} sites in {len(files)} files")
        return 0
    if a.sample is not None:
        seed = a.seed if a.seed is not None else random.randrange(1 << 30)
        print(f"sample of {a.sample}, seed {seed} (replay: --sample {a.sample} --seed {seed})")
        muts = random.Random(seed).sample(muts, min(a.sample, len(muts)))

    env = dict(os.environ)
    flags = env.get("RUSTFLAGS", "")
    env["RUSTFLAGS"] = (flags + " --cfg shmkit_loom").strip()

    # The unmutated code must pass every run we are about to use: otherwise
    # every mutant would look killed.
    baseline = []
    for s in muts:
        for r in s["runs"]:
            if r not in baseline:
                baseline.append(r)
    t0 = time.time()
    if not a.no_baseline:
        verdict, detail = run_models(baseline, a.target_dir, a.timeout, env, a.jobs, a.model)
        if verdict != "passed":
            print(f"the unmutated models did not pass ({verdict}: {detail}): fix that first",
                  flush=True)
            return 2
        print(f"baseline: {len(baseline)} loom runs pass unmutated ({time.time() - t0:.0f}s)",
              flush=True)

    results = []
    for i, s in enumerate(muts, 1):
        path = ROOT / s["file"]
        original = path.read_text()
        t0 = time.time()
        try:
            path.write_text(mutate_text(original, s))
            verdict, detail = run_models(s["runs"], a.target_dir, a.timeout, env, a.jobs, a.model)
        finally:
            path.write_text(original)
        word = {"failed": "killed", "passed": "SURVIVED"}.get(verdict, verdict)
        if word == "SURVIVED" and s["key"] in listed:
            word = "survived (listed)"
        results.append((s, word))
        by = f"  by {detail}" if word == "killed" else ""
        print(f"[{i}/{len(muts)}] {word:18} {time.time() - t0:6.0f}s  {s['file']}:{s['line']}  "
              f"{s['from']} -> {s['to']}  `{s['snippet']}`{by}", flush=True)

    killed = sum(1 for _, w in results if w == "killed")
    survived = [s for s, w in results if w.startswith("SURVIVED")]
    listed_n = sum(1 for _, w in results if w == "survived (listed)")
    other = [(s, w) for s, w in results if w not in ("killed", "SURVIVED", "survived (listed)")]
    print(f"\n{killed} killed, {listed_n} survived and listed, {len(survived)} survived unlisted, "
          f"{len(other)} other (timeout / compile error) of {len(results)} mutants")
    per_file = {}
    for s, w in results:
        k = per_file.setdefault(s["file"], [0, 0, 0])
        k[0 if w == "killed" else 1 if w.startswith("surv") or w == "SURVIVED" else 2] += 1
    for f, (k, sv, o) in sorted(per_file.items()):
        print(f"  {f}: {k} killed, {sv} survived" + (f", {o} other" if o else ""))
    for s in survived:
        print(f"unlisted survivor: | {s['key']} | <why it is harmless> |")
    for s, w in other:
        print(f"{w}: {s['key']}")
    if a.check and (survived or any(w == "compile-error" for _, w in other)):
        return 1
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    sys.exit(main())
