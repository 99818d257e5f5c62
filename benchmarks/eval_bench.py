"""Benchmark of geosample's retrieval evaluation against a full-matrix numpy baseline, FAISS and one bare GEMM.

Every case runs in a fresh subprocess on the same seeded embeddings (captions
planted near their image, 5 per image, 1–3 l2/l3 labels per image) and
computes, where it is a retrieval method, the top 10 of both directions plus
R@1/5/10, mAP@5 and WMAP@5 (raw and normalised) at l2 and l3 with geosample's
metric functions, so only the search differs. "wall" is the work alone (inputs
already loaded); "CPU s" is the child's CPU time over all its threads for the
same work, steadier than wall time when other jobs share the cores; "peak
RSS" is the child's ru_maxrss, which sees BLAS and FAISS buffers that
tracemalloc would not. Cases are interleaved across repeats and the best wall
time of each is kept.

    python benchmarks/eval_bench.py                       # 10,000 × 50,000 × 512 on CPU
    python benchmarks/eval_bench.py --large               # also 50,000 × 250,000 (geosample, FAISS)
    python benchmarks/eval_bench.py --cases geosample gemm --repeat 3
    python benchmarks/eval_bench.py --gpu                 # on a CUDA machine: torch full-matrix topk vs geosample
    python benchmarks/eval_bench.py --cases --end-to-end  # only the whole command on a planned 10,000-sample DS
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

CAPTIONS_PER_IMAGE = 5
K = 10
LEVEL_CODES = {"l2": 24, "l3": 78}
CPU_CASES = ("gemm", "geosample", "geosample-bootstrap", "faiss", "numpy-full")
TORCH_CASES = ("torch-gemm", "geosample-torch")
LARGE_CASES = ("gemm-blocked", "geosample", "faiss")
GPU_CASES = ("gemm-gpu", "geosample-gpu", "torch-gpu-full")


def make_data(folder: Path, n: int, d: int, seed: int) -> None:
    """Unit image vectors, captions = image + noise (planted matches), and label bitsets per image."""
    rng = np.random.default_rng(seed)
    images = rng.standard_normal((n, d), dtype=np.float32)
    images /= np.linalg.norm(images, axis=1, keepdims=True)
    owner = np.repeat(np.arange(n), CAPTIONS_PER_IMAGE)
    # Noise of norm ~0.25·√d puts a caption at cosine ~0.2 from its image: retrieval is good, not perfect.
    texts = images[owner] + 0.25 * rng.standard_normal((len(owner), d), dtype=np.float32)
    np.save(folder / "images.npy", images)
    np.save(folder / "texts.npy", texts / np.linalg.norm(texts, axis=1, keepdims=True))
    np.save(folder / "text_image.npy", owner)
    for level, codes in LEVEL_CODES.items():
        bits = np.zeros((n, 2), dtype=np.uint64)
        for _ in range(3):
            code = rng.integers(0, codes, n)
            use = rng.random(n) < 0.7
            np.bitwise_or.at(
                bits, (np.flatnonzero(use), code[use] // 64), np.uint64(1) << (code[use] % 64).astype(np.uint64)
            )
        np.save(folder / f"bits_{level}.npy", bits)
        codes = [[f"{level}-{c}" for c in range(LEVEL_CODES[level]) if (int(b[c // 64]) >> (c % 64)) & 1] for b in bits]
        (folder / f"labels_{level}.json").write_text(json.dumps(codes))


def score(i2t: np.ndarray, t2i: np.ndarray, folder: Path) -> dict[str, float]:
    """R@1/5/10, mAP@5, WMAP@5 and WMAP@5_norm of both directions, with geosample's metric functions."""
    from geosample.retrieval import _scoring, metrics

    text_image = np.load(folder / "text_image.npy")
    bits = {lv: np.load(folder / f"bits_{lv}.npy") for lv in LEVEL_CODES}
    counts = {lv: metrics.popcount(b).sum(axis=1) for lv, b in bits.items()}
    text_bits = {lv: b[text_image] for lv, b in bits.items()}
    image_scores = _scoring.retrieval_scores(
        metrics.image_first_hit(i2t, text_image), i2t, bits, text_bits, counts, [1, 5, 10]
    )
    text_scores = _scoring.retrieval_scores(
        metrics.text_first_hit(t2i, text_image), t2i, text_bits, bits, {lv: c[text_image] for lv, c in counts.items()},
        [1, 5, 10],
    )  # fmt: skip
    out = {f"i2t {c}": float(image_scores[c].mean()) for c in image_scores.columns if c != "first_hit"}
    out |= {f"t2i {c}": float(text_scores[c].mean()) for c in text_scores.columns if c != "first_hit"}
    return out


def read_labels(folder: Path) -> tuple[Any, np.ndarray]:
    """The label lists per level (as evaluate reads them from labels.parquet) and each caption's image."""
    import pandas as pd

    labels = pd.DataFrame({lv: json.loads((folder / f"labels_{lv}.json").read_text()) for lv in LEVEL_CODES})
    return labels, np.load(folder / "text_image.npy")


def evaluator_scores(found: Any, images: np.ndarray, texts: np.ndarray, inputs: tuple[Any, np.ndarray],
                     bootstrap: int) -> dict:  # fmt: skip
    """What `geosample evaluate` computes after the search: tie-aware R@K (expected), mAP/WMAP, weighted means, CIs."""
    from geosample.retrieval import EvaluateConfig
    from geosample.retrieval.design import Design, estimate
    from geosample.retrieval.evaluate import score_queries

    labels, text_image = inputs
    cfg = EvaluateConfig(k=(1, 5, 10), levels=tuple(LEVEL_CODES), bootstrap=bootstrap)
    image_scores, text_scores, _ = score_queries(images, texts, labels, found, text_image, cfg)
    n = len(images)
    rng = np.random.default_rng(0)  # made-up design: 50 strata, unequal inclusion probabilities
    design = Design(1 / rng.uniform(0.01, 0.5, n), np.arange(n), rng.integers(0, 50, n), "inclusion_prob")
    est = estimate(design, image_scores.drop(columns="first_hit"), text_scores.drop(columns="first_hit"), text_image,
                   [np.ones(n, bool)], replicates=bootstrap, seed=0)[0]  # fmt: skip
    values = dict(zip(est.columns, est.unweighted.tolist(), strict=True))
    return {"i2t R@1": values["image_to_text/R@1"], "t2i R@1": values["text_to_image/R@1"],
            "i2t WMAP@5/l3": values["image_to_text/WMAP@5/l3"]}  # fmt: skip


def blas_info() -> list[str]:
    """The BLAS libraries loaded in this process: API, version, kernel (architecture), threads."""
    from threadpoolctl import threadpool_info

    return [
        f"{i.get('internal_api')} {i.get('version')} {i.get('architecture')} ×{i.get('num_threads')} "
        f"({Path(i.get('filepath', '')).name})"
        for i in threadpool_info()
        if i.get("user_api") == "blas"
    ]


def torch_blas() -> str:
    """torch's own BLAS (MKL on x86 wheels, statically linked, so threadpoolctl does not list it) and its threads."""
    import torch

    config = torch.__config__.show()
    blas = next((line.split("=", 1)[1].strip(" ,") for line in config.split() if line.startswith("BLAS_INFO=")), "?")
    version = re.search(r"Math Kernel Library Version ([\w.]+)", config)
    return f"torch {torch.__version__}: {blas}{' ' + version.group(1) if version else ''} ×{torch.get_num_threads()}"


def run_case(case: str, folder: Path, memory_cap: int) -> dict[str, Any]:
    """One case, in this (fresh) process: load, then time the work."""
    images = np.load(folder / "images.npy")
    texts = np.load(folder / "texts.npy")
    labels = read_labels(folder)  # inputs, read before the clock starts like the embeddings
    result: dict[str, Any] = {"case": case, "n": len(images), "m": len(texts), "d": images.shape[1]}
    # Every import and start-up outside the timed region: geosample, FAISS, torch (and CUDA's context).
    import geosample.retrieval.evaluate  # noqa: F401
    import geosample.retrieval.search  # noqa: F401

    if case == "faiss":
        import faiss  # noqa: F401
    if "torch" in case or "gpu" in case:
        import torch

        torch.ones((64, 64)) @ torch.ones((64, 64))
    if "gpu" in case:
        (torch.ones((64, 64), device="cuda") @ torch.ones((64, 64), device="cuda")).sum().item()
    result["blas"] = blas_info()
    if "torch" in case or "gpu" in case:
        result["blas"] += [torch_blas()]
    started, cpu = time.perf_counter(), time.process_time()
    if case == "gemm":
        # The floor: one float32 GEMM of the similarity matrix into a buffer already in memory, then
        # the same GEMM as `images @ texts.T` does it (a fresh 4·N·M-byte result, page faults included).
        buffer = np.ones((len(images), len(texts)), dtype=np.float32)
        started, cpu = time.perf_counter(), time.process_time()
        np.matmul(images, texts.T, out=buffer)
        result["wall"], result["cpu"] = time.perf_counter() - started, time.process_time() - cpu
        del buffer
        started = time.perf_counter()
        fresh = images @ texts.T
        result["wall_fresh_output"] = time.perf_counter() - started
        del fresh
    elif case == "gemm-blocked":
        # The floor when the matrix does not fit: GEMM block by block into one reused buffer.
        rows = max(1, memory_cap // (4 * len(texts)))
        buffer = np.ones((rows, len(texts)), dtype=np.float32)
        started, cpu = time.perf_counter(), time.process_time()
        for start in range(0, len(images), rows):
            part = images[start : start + rows]
            np.matmul(part, texts.T, out=buffer[: len(part)])
        result["wall"], result["cpu"] = time.perf_counter() - started, time.process_time() - cpu
    elif case in ("geosample", "geosample-bootstrap", "geosample-gpu"):
        from geosample.retrieval.search import search

        device = "cuda" if case == "geosample-gpu" else "cpu"
        found = search(images, texts, K + 1, device=device, memory_cap=memory_cap)  # evaluate's depth: max K + 1
        result["search_wall"] = time.perf_counter() - started
        bootstrap = 1000 if case == "geosample-bootstrap" else 0
        # Everything evaluate computes: R@K (ties expected), mAP/WMAP, weighted means (and the bootstrap).
        result["evaluator"] = evaluator_scores(found, images, texts, labels, bootstrap)
        result["wall"] = time.perf_counter() - started
        result["evaluator_wall"] = result["wall"] - result["search_wall"]
        result["cpu"] = time.process_time() - cpu
        # The baselines' metric set, for the equality check (not timed).
        result["metrics"] = score(found.image_to_text[:, :K], found.text_to_image[:, :K], folder)
    elif case == "torch-gemm":
        import torch

        a, b = torch.from_numpy(images), torch.from_numpy(texts)
        buffer = torch.ones((len(images), len(texts)))
        started, cpu = time.perf_counter(), time.process_time()
        torch.mm(a, b.T, out=buffer)
        result["wall"], result["cpu"] = time.perf_counter() - started, time.process_time() - cpu
        result["torch_threads"] = torch.get_num_threads()
    elif case == "geosample-torch":
        from geosample.retrieval import _torch_search
        from geosample.retrieval.search import Neighbours

        swap = len(texts) > len(images)
        big, small = (texts, images) if swap else (images, texts)
        b_idx, b_val, s_idx, s_val = _torch_search.search_both(
            big, small, K + 1, device="cpu", precision="fp32", memory_cap=memory_cap
        )
        found = Neighbours(s_idx, s_val, b_idx, b_val, "cpu") if swap else Neighbours(b_idx, b_val, s_idx, s_val, "cpu")
        result["search_wall"] = time.perf_counter() - started
        result["evaluator"] = evaluator_scores(found, images, texts, labels, 0)
        result["wall"] = time.perf_counter() - started
        result["cpu"] = time.process_time() - cpu
        result["metrics"] = score(found.image_to_text[:, :K], found.text_to_image[:, :K], folder)
    elif case == "faiss":
        import faiss

        index = faiss.IndexFlatIP(texts.shape[1])
        index.add(texts)
        _, i2t = index.search(images, K)
        index = faiss.IndexFlatIP(images.shape[1])
        index.add(images)
        _, t2i = index.search(texts, K)
        result["search_wall"] = time.perf_counter() - started
        result["metrics"] = score(i2t, t2i, folder)
        result["wall"] = time.perf_counter() - started
    elif case == "numpy-full":
        sims = images @ texts.T
        part = np.argpartition(sims, -K, axis=1)[:, -K:]
        i2t = np.take_along_axis(part, np.argsort(-np.take_along_axis(sims, part, 1), axis=1), 1)
        part = np.argpartition(sims.T, -K, axis=1)[:, -K:]
        t2i = np.take_along_axis(part, np.argsort(-np.take_along_axis(sims.T, part, 1), axis=1), 1)
        del sims
        result["search_wall"] = time.perf_counter() - started
        result["metrics"] = score(i2t, t2i, folder)
        result["wall"] = time.perf_counter() - started
    elif case == "gemm-gpu":
        import torch

        a, b = torch.from_numpy(images).cuda().half(), torch.from_numpy(texts).cuda().half()
        sims = a @ b.T  # warm-up: cuBLAS handles and workspace
        torch.cuda.synchronize()
        started = time.perf_counter()
        sims = torch.mm(a, b.T, out=sims)
        torch.cuda.synchronize()
        result["wall"] = time.perf_counter() - started
        result["gpu_peak_mb"] = torch.cuda.max_memory_allocated() / 1e6
    elif case == "torch-gpu-full":
        import torch

        # From host arrays to host top-k lists, like geosample-gpu.
        a, b = torch.from_numpy(images).cuda().half(), torch.from_numpy(texts).cuda().half()
        sims = (a @ b.T).float()
        i2t = torch.topk(sims, K, dim=1).indices.cpu().numpy()
        t2i = torch.topk(sims, K, dim=0).indices.T.cpu().numpy()
        del sims
        torch.cuda.synchronize()
        result["search_wall"] = time.perf_counter() - started
        result["metrics"] = score(i2t, t2i, folder)
        result["wall"] = time.perf_counter() - started
        result["gpu_peak_mb"] = torch.cuda.max_memory_allocated() / 1e6
    else:
        raise SystemExit(f"unknown case {case}")
    result.setdefault("cpu", time.process_time() - cpu)
    if case == "geosample-gpu":
        import torch

        result["gpu_peak_mb"] = torch.cuda.max_memory_allocated() / 1e6
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result["load"] = os.getloadavg()[0]
    return result


def end_to_end(n: int, d: int, seed: int) -> None:
    """``geosample evaluate DS --encoder precomputed`` on a planned world dataset of ``n`` samples, as users run it."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    from geosample import plan
    from geosample.labels import load_taxonomy

    with tempfile.TemporaryDirectory(prefix="eval-bench-ds-") as tmp:
        ds = Path(tmp) / "DS"
        samples = sorted(plan(ds, samples=n, seed=seed, progress=False)["sample_id"])
        make_data(Path(tmp), len(samples), d, seed)
        rng = np.random.default_rng(seed)
        taxonomy = load_taxonomy()
        l3 = np.array(taxonomy.codes_at("l3"))
        picks = [list(dict.fromkeys(rng.choice(l3, size=int(rng.integers(1, 4))))) for _ in samples]
        levels = {lv: [list(dict.fromkeys(taxonomy.ancestor(c, lv) for c in p)) for p in picks] for lv in ("l1", "l2")}
        labels = pd.DataFrame({"sample_id": samples, "l1": levels["l1"], "l2": levels["l2"], "l3": picks})
        for lv in ("l1", "l2", "l3"):
            labels[f"{lv}_dominant"] = labels[lv].str[0]
        labels["taxonomy"] = taxonomy.key
        labels.to_parquet(ds / "labels.parquet", index=False)
        owner = np.load(Path(tmp) / "text_image.npy")
        captions = pd.DataFrame({"sample_id": np.array(samples)[owner], "caption_index": np.tile(np.arange(5), n)})
        captions["caption"] = "a caption"
        captions.to_parquet(ds / "captions.parquet", index=False)
        images, texts = np.load(Path(tmp) / "images.npy"), np.load(Path(tmp) / "texts.npy")
        pq.write_table(pa.table({"sample_id": samples, "embedding": list(images)}), Path(tmp) / "images.parquet")
        text_table = {**captions[["sample_id", "caption_index"]].to_dict("list"), "embedding": list(texts)}
        pq.write_table(pa.table(text_table), Path(tmp) / "texts.parquet")
        embeddings = ["--image-embeddings", str(Path(tmp) / "images.parquet")]
        embeddings += ["--text-embeddings", str(Path(tmp) / "texts.parquet")]
        command = [sys.executable, "-m", "geosample", "evaluate", str(ds), *embeddings]
        started = time.perf_counter()
        proc = subprocess.run(command, capture_output=True, text=True, check=False)
        wall = time.perf_counter() - started
    print(f"\n`geosample evaluate` on {n:,} samples × 5 captions, {d}-d (import, read, search, score, write): "
          f"{wall:.1f} s, exit {proc.returncode}")  # fmt: skip
    print("\n".join(proc.stdout.splitlines()[:12]) if proc.returncode == 0 else proc.stderr)


def in_subprocess(case: str, folder: Path, memory_cap: int) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, __file__, "--child", case, "--data", str(folder), "--memory-cap", str(memory_cap)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if proc.returncode != 0:
        return {"case": case, "error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "failed"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def bench(label: str, n: int, d: int, cases: list[str], repeat: int, memory_cap: int, seed: int) -> list[dict]:
    with tempfile.TemporaryDirectory(prefix="eval-bench-") as tmp:
        folder = Path(tmp)
        make_data(folder, n, d, seed)
        best: dict[str, dict[str, Any]] = {}
        for _ in range(repeat):  # interleaved, so background load hits every case alike
            for case in cases:
                run = in_subprocess(case, folder, memory_cap)
                prev = best.get(case)
                if prev is None or "error" in prev or ("error" not in run and run["wall"] < prev["wall"]):
                    best[case] = run
        rows = list(best.values())
    print_table(label, rows)
    return rows


def print_table(label: str, rows: list[dict[str, Any]]) -> None:
    gemm = next((r for r in rows if r["case"] in ("gemm", "gemm-blocked", "gemm-gpu") and "wall" in r), None)
    torch_gemm = next((r for r in rows if r["case"] == "torch-gemm" and "wall" in r), None)
    faiss = next((r["wall"] for r in rows if r["case"] == "faiss" and "wall" in r), None)
    print(f"\n{label} (1-min load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")
    print(f"{'case':<16} {'wall s':>8} {'search s':>9} {'× GEMM':>7} {'× FAISS':>8} {'CPU s':>7} {'CPU × GEMM':>10} "
          f"{'peak RSS MB':>12} {'load':>5}  notes")  # fmt: skip
    for r in rows:
        if "error" in r:
            print(f"{r['case']:<16} error: {r['error']}")
            continue
        notes = []
        if "wall_fresh_output" in r:
            notes.append(f"`A @ B.T` with a fresh result: {r['wall_fresh_output']:.2f} s")
        if "metrics" in r:
            m = r["metrics"]
            notes.append(f"R@1 i2t {m['i2t R@1']:.4f} t2i {m['t2i R@1']:.4f}, WMAP@5 l3 {m['i2t WMAP@5/l3']:.4f}")
        if "evaluator_wall" in r:
            notes.append(f"evaluator scoring (ties, weighted, bootstrap) {r['evaluator_wall']:.2f} s")
        if "gpu_peak_mb" in r:
            notes.append(f"GPU peak {r['gpu_peak_mb']:.0f} MB")
        base = torch_gemm if "torch" in r["case"] and torch_gemm else gemm
        floor = base["wall"] if base else None
        x_gemm = f"{r['wall'] / floor:.2f}" if floor else "–"
        x_faiss = f"{r['wall'] / faiss:.2f}" if faiss else "–"
        x_cpu = f"{r['cpu'] / base['cpu']:.2f}" if base and "cpu" in base else "–"
        search = f"{r['search_wall']:.2f}" if "search_wall" in r else "–"
        print(f"{r['case']:<16} {r['wall']:>8.2f} {search:>9} {x_gemm:>7} {x_faiss:>8} {r['cpu']:>7.2f} {x_cpu:>10} "
              f"{r['peak_rss_mb']:>12.0f} {r.get('load', float('nan')):>5.1f}  {'; '.join(notes)}")  # fmt: skip
    print("× GEMM: against `gemm` (numpy) or, for the torch cases, `torch-gemm`; BLAS per case:")
    for blas in sorted({b for r in rows for b in r.get("blas", [])}):
        print(f"  {blas}  ({', '.join(r['case'] for r in rows if blas in r.get('blas', []))})")
    plain = next((r for r in rows if r["case"] == "geosample" and "wall" in r), None)
    boot = next((r for r in rows if r["case"] == "geosample-bootstrap" and "wall" in r), None)
    if plain and boot:
        print(f"bootstrap (1000 replicates, {plain['n']:,} sites in 50 strata): +{boot['wall'] - plain['wall']:.2f} s "
              f"over the same evaluation without it")  # fmt: skip
    reference = next((r for r in rows if r["case"] == "numpy-full" and "metrics" in r), None)
    ours = next((r for r in rows if r["case"].startswith("geosample") and "metrics" in r), None)
    if reference and ours:
        same = all(abs(ours["metrics"][key] - value) < 1e-9 for key, value in reference["metrics"].items())
        print(f"geosample's metrics {'equal' if same else 'DIFFER FROM'} the full-matrix baseline's")


def pin_blas() -> None:
    """Pin every OpenBLAS (numpy's, FAISS's bundled one) to the kernel numpy's detects, for all child processes.

    FAISS's bundled OpenBLAS misdetects some CPUs (this one included) and falls back to a slow generic
    kernel unless OPENBLAS_CORETYPE names one; an explicit OPENBLAS_CORETYPE is kept.
    """
    if os.environ.get("OPENBLAS_CORETYPE"):
        print(f"OPENBLAS_CORETYPE={os.environ['OPENBLAS_CORETYPE']} (given)")
        return
    from threadpoolctl import threadpool_info

    kernels = [i.get("architecture") for i in threadpool_info() if i.get("internal_api") == "openblas"]
    if kernels and kernels[0]:
        os.environ["OPENBLAS_CORETYPE"] = kernels[0]
        print(f"OPENBLAS_CORETYPE={kernels[0]} (numpy's OpenBLAS kernel, pinned for every case)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", nargs="*", help=f"subset of {', '.join(CPU_CASES)}")
    parser.add_argument("--repeat", type=int, default=1, help="runs per case; the best is reported")
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--memory-cap", type=int, default=2 * 1024**3, help="bytes, for geosample and gemm-blocked")
    parser.add_argument("--large", action="store_true", help="also 50,000 × 250,000 (geosample, FAISS, blocked GEMM)")
    parser.add_argument("--gpu", action="store_true", help="torch full-matrix topk vs geosample on CUDA")
    parser.add_argument(
        "--torch-cpu", action="store_true", help="also geosample's torch path on the CPU vs one torch GEMM"
    )
    parser.add_argument("--end-to-end", action="store_true", help="time the whole command on a planned dataset")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_case(args.child, args.data, args.memory_cap)))
        return
    pin_blas()
    results: dict[str, list[dict]] = {}
    n = args.images
    label = f"{n:,} images × {n * CAPTIONS_PER_IMAGE:,} captions × {args.dim}-d, top {K} both ways + metrics"
    if args.gpu:
        results["gpu"] = bench(label + " (GPU)", n, args.dim, list(GPU_CASES), args.repeat, args.memory_cap, args.seed)
    elif args.cases is None or args.cases:
        cases = args.cases or list(CPU_CASES) + (list(TORCH_CASES) if args.torch_cpu else [])
        results["cpu"] = bench(label, n, args.dim, cases, args.repeat, args.memory_cap, args.seed)
    if args.large:
        big = 50_000
        cap = args.memory_cap / 2**30
        label = f"{big:,} images × {big * CAPTIONS_PER_IMAGE:,} captions × {args.dim}-d (memory cap {cap:.0f} GiB)"
        results["large"] = bench(label, big, args.dim, list(LARGE_CASES), 1, args.memory_cap, args.seed)
    if args.end_to_end:
        end_to_end(n, args.dim, args.seed)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
