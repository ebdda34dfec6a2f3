#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Summarize bench/nbd-bench.sh's runs: table, CSV and chart.

    nbd-bench-report.py RUNS.csv STEM MACHINE.txt

Writes STEM.txt (the machine description and the table, also printed on
stdout), STEM.csv (one line per row and server) and STEM.png (sendense-nbd
against the best peer, per row), when matplotlib (or gnuplot) is there.
"""
import csv
import os
import statistics
import subprocess
import sys

OURS = "sendense-nbd"
CEILING = "file"      # fio on the file: the device's ceiling
PUMP = "pump"         # bench/socket-pump: the transport's ceiling
NBD_PUMP = "nbd-pump" # bench/nbd-pump: the least NBD server, same client
CEILINGS = (CEILING, PUMP, NBD_PUMP)
LOWER_IS_BETTER = {"ms", "KiB/conn"}
GIB = float(1 << 30)


def num(text):
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def median(values):
    return statistics.median(values) if values else None


def summarize(runs):
    """One entry per (row, server), in the order the runs came."""
    groups = {}
    for r in runs:
        groups.setdefault((r["row"], r["server"]), []).append(r)
    out = []
    for (row, server), rs in groups.items():
        ok = [r for r in rs if r["status"] == "ok" and num(r["value"]) is not None]
        loads = [num(r.get("load1")) for r in rs if num(r.get("load1")) is not None]
        s = {"row": row, "server": server, "runs": len(rs), "ok": len(ok),
             "load": max(loads) if loads else None,
             "status": "ok" if ok else rs[0]["status"],
             "note": next((r["note"] for r in rs if r["note"]), "")}
        if not ok:
            out.append(s)
            continue
        values = [num(r["value"]) for r in ok]
        s.update(unit=ok[0]["unit"], value=median(values), min=min(values),
                 max=max(values))
        costs = [run_cost(r) for r in ok]
        s["cpu"], s["cpu_unit"] = median_cost(costs)
        s["by_rep"] = {r["rep"]: (num(r["value"]), cost)
                       for r, (cost, _) in zip(ok, costs)}
        rss = [num(r["rss_kib"]) for r in ok if num(r["rss_kib"])]
        s["rss_mib"] = median(rss) / 1024 if rss else None
        amps = [num(r["alloc_bytes"]) / num(r["written_bytes"]) for r in ok
                if num(r["alloc_bytes"]) is not None and num(r["written_bytes"])]
        s["amp"] = median(amps)
        if len(ok) < len(rs):
            s["note"] = "%d of %d runs failed" % (len(rs) - len(ok), len(rs))
        out.append(s)
    return out


def run_cost(r):
    """One run's server CPU per GiB moved (throughput rows) or per
    request (IOPS), and its unit; (None, "") if it cannot be told."""
    cpu = num(r["cpu_s"])
    if cpu is None:
        return None, ""
    if r["unit"] == "IOPS" and num(r["requests"]):
        return cpu * 1e6 / num(r["requests"]), "us/req"
    if r["unit"] == "MiB/s" and num(r["bytes"]):
        return cpu / (num(r["bytes"]) / GIB), "s/GiB"
    if r["unit"] == "ms":
        return cpu, "s"
    return None, ""


def median_cost(costs):
    """The median of a row's run_cost() pairs, and their unit."""
    per = [c for c, _ in costs if c is not None]
    unit = next((u for c, u in costs if c is not None), "")
    return median(per), unit


def add_ratios(summary):
    """x best peer: > 1 means sendense-nbd is better (faster, or less
    time or memory for the lower-is-better units)."""
    by_row = {}
    for s in summary:
        by_row.setdefault(s["row"], []).append(s)
    for row, ss in by_row.items():
        ours = next((s for s in ss if s["server"] == OURS and s.get("value") is not None), None)
        peers = [s for s in ss if s["server"] not in (OURS,) + CEILINGS
                 and s.get("value") is not None]
        ceiling = next((s for s in ss if s["server"] == CEILING and s.get("value")), None)
        if ours is None:
            continue
        lower = ours["unit"] in LOWER_IS_BETTER
        if peers:
            best = (min if lower else max)(peers, key=lambda s: s["value"])
            if best["value"] and ours["value"]:
                ours["x_best"] = (best["value"] / ours["value"] if lower
                                  else ours["value"] / best["value"])
                ours["best_peer"] = best["server"]
        if ceiling:
            ours["x_ceiling"] = paired_ratio(ours, ceiling, 0)
        for name, key in ((PUMP, "pump"), (NBD_PUMP, "nbd_pump")):
            pump = next((s for s in ss if s["server"] == name and s.get("value")), None)
            if pump:
                ours["x_" + key] = paired_ratio(ours, pump, 0)
                ours["cpu_x_" + key] = paired_ratio(ours, pump, 1)


def paired_ratio(ours, ceiling, field):
    """The median over repetitions of ours / ceiling, each repetition's
    pair measured one right after the other. The disk drifts by half
    from one minute to the next; a ratio of two medians taken from
    different minutes carries that drift, a ratio within one
    repetition does not. field: 0 the row's value, 1 its CPU cost."""
    ratios = []
    for rep, mine in ours["by_rep"].items():
        theirs = ceiling["by_rep"].get(rep)
        if theirs and mine[field] is not None and theirs[field]:
            ratios.append(mine[field] / theirs[field])
    return median(ratios)


def fmt(value, spec):
    return "" if value is None else spec % value


def value_text(s):
    if s.get("value") is None:
        return s["status"]
    spec = "%.0f" if s["unit"] in ("IOPS",) or s["value"] >= 100 else "%.1f"
    if s["unit"] in ("ms", "KiB/conn") and s["value"] < 100:
        spec = "%.2f"
    text = (spec % s["value"]) + " " + s["unit"]
    if s["ok"] > 1:
        text += " [" + (spec % s["min"]) + "-" + (spec % s["max"]) + "]"
    return text


def table(summary):
    head = ["row", "server", "median [min-max]", "server CPU", "peak RSS MiB",
            "space amp", "x best peer", "x ceiling", "x pump", "CPU x pump",
            "x nbd-pump", "CPU x nbd-pump", "load"]
    lines = [head]
    for s in summary:
        lines.append([
            s["row"], s["server"], value_text(s),
            fmt(s.get("cpu"), "%.3f") + (" " + s["cpu_unit"] if s.get("cpu") is not None else ""),
            fmt(s.get("rss_mib"), "%.1f"), fmt(s.get("amp"), "%.2f"),
            fmt(s.get("x_best"), "%.2f") + (" (" + s["best_peer"] + ")" if s.get("x_best") else ""),
            fmt(s.get("x_ceiling"), "%.2f"), fmt(s.get("x_pump"), "%.2f"),
            fmt(s.get("cpu_x_pump"), "%.2f"), fmt(s.get("x_nbd_pump"), "%.2f"),
            fmt(s.get("cpu_x_nbd_pump"), "%.2f"), fmt(s.get("load"), "%.1f"),
        ])
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    text = []
    previous_row = None
    for n, line in enumerate(lines):
        if n > 1 and line[0] == previous_row:
            line = [""] + line[1:]
        else:
            previous_row = line[0]
        text.append("  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip())
        if n == 0:
            text.append("  ".join("-" * w for w in widths))
    return "\n".join(text) + "\n"


def write_csv(path, summary):
    cols = ["row", "server", "status", "unit", "median", "min", "max", "runs",
            "cpu", "cpu_unit", "peak_rss_mib", "space_amp", "x_best_peer",
            "best_peer", "x_ceiling", "x_pump", "cpu_x_pump", "x_nbd_pump",
            "cpu_x_nbd_pump", "max_load1", "note"]
    keys = ["row", "server", "status", "unit", "value", "min", "max", "ok",
            "cpu", "cpu_unit", "rss_mib", "amp", "x_best", "best_peer",
            "x_ceiling", "x_pump", "cpu_x_pump", "x_nbd_pump", "cpu_x_nbd_pump",
            "load", "note"]
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(cols)
        for s in summary:
            w.writerow(["" if s.get(k) is None else
                        (round(s[k], 4) if isinstance(s[k], float) else s[k])
                        for k in keys])


def chart(path, summary, title):
    bars = [(s["row"], s["x_best"]) for s in summary
            if s["server"] == OURS and s.get("x_best")]
    if not bars:
        return "no ratio to draw"
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return gnuplot_chart(path, bars, title)
    fig, ax = plt.subplots(figsize=(10, 0.32 * len(bars) + 1.6))
    names = [b[0] for b in bars][::-1]
    ratios = [b[1] for b in bars][::-1]
    colors = ["#2a9d8f" if r >= 1 else "#e76f51" for r in ratios]
    ax.barh(names, ratios, color=colors)
    ax.axvline(1.0, color="black", linewidth=0.8)
    for y, r in enumerate(ratios):
        ax.text(r, y, " %.2f" % r, va="center", fontsize=7)
    ax.set_xlabel("sendense-nbd / best peer (> 1: sendense-nbd better)")
    ax.set_title(title, fontsize=9)
    ax.tick_params(axis="y", labelsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return None


def gnuplot_chart(path, bars, title):
    if not any(os.access(os.path.join(d, "gnuplot"), os.X_OK)
               for d in os.environ.get("PATH", "").split(":")):
        return "neither matplotlib nor gnuplot is installed"
    data = "\n".join('"%s" %.4f' % b for b in bars)
    script = ("set terminal png size 1000,%d\nset output '%s'\nset title '%s'\n"
              "set style fill solid\nset boxwidth 0.7\nset xtics rotate by 60 right font ',7'\n"
              "plot '-' using 2:xtic(1) with boxes notitle, 1 notitle\n%s\ne\n"
              % (400 + 10 * len(bars), path, title, data))
    subprocess.run(["gnuplot"], input=script.encode(), check=True)
    return None


def main(argv):
    if len(argv) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    with open(argv[1], newline="") as f:
        runs = list(csv.DictReader(f))
    stem = argv[2]
    with open(argv[3]) as f:
        machine = f.read()
    summary = summarize(runs)
    add_ratios(summary)
    text = machine + "\n" + table(summary)
    sys.stdout.write(text)
    with open(stem + ".txt", "w") as f:
        f.write(text)
    write_csv(stem + ".csv", summary)
    why = chart(stem + ".png", summary, os.path.basename(stem))
    if why:
        print("# no chart: " + why, file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
