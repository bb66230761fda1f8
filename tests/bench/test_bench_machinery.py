"""The benchmarks' shared machinery (bench/_measure.py, bench/_report.py, bench/run_all.py): medians and
spreads, per-round ratios, the interleaving order, the table writer, the doc sections, the run-to-run check."""

from __future__ import annotations

import importlib
import statistics
import sys

import pytest

from tests.bench.bench_modules import BENCH, load


@pytest.fixture(scope="module")
def bench():
    return {name: load(name) for name in ("_measure", "_report", "run_all")}


def test_spread_is_median_min_max(bench):
    M = bench["_measure"]
    values = [3.0, 1.0, 7.0, 2.0]
    s = M.spread(values)
    assert (s.median, s.lo, s.hi, s.n) == ((2.0 + 3.0) / 2, 1.0, 7.0, 4)
    assert M.spread([5.0]).median == 5.0
    assert s.fmt(1, "x") == f"{(2.0 + 3.0) / 2:.1f}x ({1.0:.1f}x-{7.0:.1f}x)"
    assert s.scaled(10.0) == M.Spread(25.0, 10.0, 70.0, 4)
    with pytest.raises(ValueError):
        M.spread([])


def test_ratio_is_the_median_of_per_round_ratios(bench):
    M = bench["_measure"]
    num, den = [1.0, 10.0, 3.0], [1.0, 2.0, 3.0]
    r = M.ratios(num, den)
    per_round = [1.0 / 1.0, 10.0 / 2.0, 3.0 / 3.0]
    assert r.median == statistics.median(per_round) == 1.0
    assert (r.lo, r.hi) == (min(per_round), max(per_round))
    assert r.median != statistics.median(num) / statistics.median(den)  # not the ratio of medians (3 / 2)
    with pytest.raises(ValueError):
        M.ratios([1.0], [1.0, 2.0])


def test_consistent_needs_each_median_within_the_other_spread(bench):
    M = bench["_measure"]
    a = M.Spread(1.0, 0.9, 1.2, 5)
    assert M.consistent(a, M.Spread(1.1, 0.95, 1.3, 5))
    assert not M.consistent(a, M.Spread(1.25, 1.15, 1.3, 5))  # 1.25 outside a's 0.9-1.2
    assert not M.consistent(a, M.Spread(1.1, 1.05, 1.3, 5))  # a's median 1.0 outside 1.05-1.3
    assert M.consistent(M.exact(0.93), M.exact(0.93)) and not M.consistent(M.exact(0.93), M.exact(0.95))


def test_measure_warms_up_then_interleaves_rotated_rounds(bench):
    M = bench["_measure"]
    calls, t = [], [0.0]

    def clock():
        return t[0]

    def variant(name, cost):
        def run():
            calls.append(name)
            t[0] += cost
            return name.upper()
        return run

    costs = {"a": 1.0, "b": 2.0, "c": 4.0}
    runs = M.measure({n: variant(n, c) for n, c in costs.items()}, repeats=3, warmup=1, clock=clock,
                     cpu_clock=lambda: t[0] / 2, load=lambda: 0.5)
    assert calls == ["a", "b", "c"] + ["a", "b", "c"] + ["b", "c", "a"] + ["c", "a", "b"]
    assert runs.order == calls[3:]
    assert [M.rotated("abc", r) for r in range(4)] == [list("abc"), list("bca"), list("cab"), list("abc")]
    for n, c in costs.items():
        assert runs.values(n) == [c] * 3
        assert runs.values(n, "cpu") == [c / 2] * 3
        assert [s.value for s in runs.samples[n]] == [n.upper()] * 3
    assert runs.speedup("c", "a") == M.Spread(4.0 / 1.0, 4.0, 4.0, 3)
    assert runs.loads() == [0.5] * 9
    with pytest.raises(ValueError):
        M.measure({"a": variant("a", 1.0)}, repeats=0)


def test_markdown_table(bench):
    R = bench["_report"]
    assert R.markdown_table(["name", "s"], [["a|b", 1.5]]) == ["| name | s |", "|---|---:|", "| a/b | 1.5 |"]
    assert R.markdown_table(["x", "y", "z"], [], "lrl")[1] == "|---|---:|---|"
    with pytest.raises(ValueError):
        R.markdown_table(["x", "y"], [["only one"]])


def test_load_line_says_when_under_load(bench):
    R = bench["_report"]
    text, busy = R.load_line([1.0, 1.5, 1.2], cores=2)
    assert not busy and "1.2 (1.0-1.5) on 2 cores" in text and "under load" not in text
    text, busy = R.load_line([3.0, 4.0, 5.0], cores=2)
    assert busy and "**under load**" in text


def test_replace_section_keeps_the_prose_outside_the_markers(bench):
    R = bench["_report"]
    doc = "# T\n\nprose before\n<!-- bench:x -->\nold table\n<!-- /bench:x -->\nprose after\n<!-- bench:y -->\n<!-- /bench:y -->\n"
    new = R.replace_section(doc, "x", "\nnew table\n")
    assert new == doc.replace("old table", "new table")
    assert R.section_names(new) == ["x", "y"]
    assert R.replace_section(new, "y", "Y") == new.replace("<!-- bench:y -->\n", "<!-- bench:y -->\nY\n")
    for bad in ("<!-- bench:x -->\n", doc + "<!-- bench:x -->\n<!-- /bench:x -->\n", "<!-- /bench:x -->\n<!-- bench:x -->"):
        with pytest.raises(ValueError):
            R.replace_section(bad, "x", "t")


def test_doc_body_drops_the_title_and_demotes_headings(bench):
    R = bench["_report"]
    assert R.doc_body("# Title\n\n- command: `x`\n\n## Part\ntext\n") == "- command: `x`\n\n#### Part\ntext"


def test_report_writes_markdown_and_json(bench, tmp_path, monkeypatch):
    M, R = bench["_measure"], bench["_report"]
    monkeypatch.setenv(R.RUN_ALL_ENV, "python bench/run_all.py --quick")
    rep = R.Report("bench_x.py", "X", ["--n", "2"])
    rep.record_loads([0.1, 0.2, 0.3])
    rep.metric("ours vs theirs", M.Spread(1.2, 1.1, 1.4, 5))
    rep.table(["a", "b"], [["r", "1"]])
    text = rep.write(tmp_path / "x.md")
    assert text.startswith("# X\n\n- command: `python bench/bench_x.py --n 2` (run by `python bench/run_all.py --quick`)")
    assert "| a | b |" in text and "- load: " in text and "- versions: Python " in text
    data = __import__("json").loads((tmp_path / "x.json").read_text())
    assert data["command"] == "python bench/bench_x.py --n 2"
    assert data["metrics"]["ours vs theirs"] == {"median": 1.2, "min": 1.1, "max": 1.4, "n": 5, "kind": "ratio"}
    assert R.metric_kind("ours wall s", M.Spread(1, 1, 2, 5)) == R.metric_kind("x ms per tomogram", M.Spread(1, 1, 2, 5)) \
        == "time"
    assert R.metric_kind("F2", M.exact(0.9)) == "count"
    assert R.metric_kind("ours vs MONAI (CPU)", M.Spread(1, 1, 2, 5)) == "cpu ratio"
    assert data["under_load"] is False


def test_run_all_compares_runs_and_reports_missing_libraries(bench, tmp_path):
    A = bench["run_all"]
    prev = {"command": "c", "metrics": {"k": {"median": 1.0, "min": 0.9, "max": 1.2, "n": 5},
                                        "f2": {"median": 0.9, "min": 0.9, "max": 0.9, "n": 1}}}
    cur = {"command": "c", "metrics": {"k": {"median": 1.1, "min": 1.0, "max": 1.3, "n": 5},
                                       "f2": {"median": 0.8, "min": 0.8, "max": 0.8, "n": 1}, "new": prev["metrics"]["k"]}}
    checks = {k: ok for k, _, _, ok, _ in A.compare(prev, cur)}
    assert checks == {"k": True, "f2": False}
    assert A.same_command(prev, cur) and not A.same_command(prev, {**cur, "command": "d"})
    assert A.missing_modules(sys.executable, ["json", "no_such_module_xyz"]) == ["no_such_module_xyz"]
    t = A.Table("t", "bench_t.py", group="export")
    o = A.Outcome(t, "not rerun", "needs the [export] extra")
    assert A.section(o).startswith("**Not rerun by the last `python bench/run_all.py`**: needs the [export] extra.")
    names = [t.name for t in A.TABLES]
    assert names.index("flops") < names.index("portal")  # the projection reads the FLOPs table


def test_every_table_has_a_doc_section(bench):
    A, R = bench["run_all"], bench["_report"]
    sections = R.section_names(A.DOC.read_text())
    assert sorted(sections) == sorted([t.name for t in A.TABLES if t.doc is None] + ["consistency"])
    for t in A.TABLES:
        assert (BENCH / t.script).is_file()
        if t.doc is not None:
            assert R.section_names(A.doc_of(t).read_text()) == [t.name], t.doc
    chaos = next(t for t in A.TABLES if t.name == "chaos")
    assert A.doc_of(chaos) == A.DOCS / "RELIABILITY.md" and chaos.full_only  # the long run stays out of --quick


def test_end_to_end_findings_state_the_non_engine_bound(bench):
    M = bench["_measure"]
    E = load("_e2e")
    ours, straight = E.ours_label(0), E.STRAIGHT
    walls = {ours: [9.0, 10.0, 11.0], straight: [12.0, 12.0, 13.0]}
    engine = {ours: [8.0, 8.0, 9.0], straight: [8.0, 8.0, 8.0]}
    runs = M.Runs([ours, straight], {n: [M.Sample(w, w, 1.0, {"engine": e}) for w, e in zip(walls[n], engine[n])]
                                     for n in walls})
    rep = bench["_report"].Report("bench_x.py", "X", [])
    rows = E.rows(runs, 3, rep)
    assert [r[0] for r in rows] == [ours, straight]
    bound = statistics.median([w / e for w, e in zip(walls[straight], engine[straight])])
    gain = statistics.median([s / o for s, o in zip(walls[straight], walls[ours])])
    text = E.findings(runs, rep)[0]
    assert f"no runner can gain more than {bound:.2f}x" in text and f"ours in-process gains {gain:.2f}x" in text
    assert rep.metrics["outside the engine: straightforward / ours in-process"].median == statistics.median(
        [(ws - es) / (wo - eo) for ws, es, wo, eo in zip(walls[straight], engine[straight], walls[ours], engine[ours])])


def test_plain_window_loop_covers_every_cell(bench):
    import numpy as np

    E = load("_e2e")
    vol = np.zeros((40, 70, 50), np.float32)
    ones = lambda b: np.ones((b.shape[0], 1, *(s // 16 for s in b.shape[2:])), np.float32)  # noqa: E731
    heat = E.plain_windows(vol, ones, (32, 32, 32), 0.25, 2)
    assert heat.shape == tuple(max(32, -(-n // 16) * 16) // 16 for n in vol.shape)
    assert np.array_equal(heat, np.ones_like(heat))  # every cell is covered by a window, mean of ones = 1


def test_gpu_form_says_what_it_needs(bench, tmp_path):
    sys.path.insert(0, str(BENCH))
    try:
        E, S = importlib.import_module("_e2e"), importlib.import_module("_gpu_sections")
    finally:
        sys.path.remove(str(BENCH))
    caps = S.Capabilities(cupy="no GPU", ort_cuda="onnxruntime 1.32.0 has no CUDAExecutionProvider (the CPU build)",
                          ort_trt="x", tensorrt="x", torch_cuda="x")
    sec = E.gpu_section(caps, tmp_path, budget=None)
    assert sec.status == S.NA and "CUDA provider" in sec.summary


def test_quick_leaves_a_full_run_table_and_its_section_alone(bench, capsys):
    A = bench["run_all"]
    reliability = (A.DOCS / "RELIABILITY.md").read_text()
    assert A.main(["--quick", "--only", "chaos"]) == 0
    assert "chaos: a full-run table" in capsys.readouterr().out
    assert (A.DOCS / "RELIABILITY.md").read_text() == reliability
