"""The readable text summary of an evaluation: every metric (mean and weighted, with intervals), ties, worst strata."""

from __future__ import annotations

from typing import Any

DIRECTIONS = (("image_to_text", "image→text"), ("text_to_image", "text→image"))
WORST = 8  # stratum values shown per dimension, worst first


def metrics_table(result: dict[str, Any], seconds: dict[str, float] | None = None) -> str:
    """Overall metrics (mean and 1/π-weighted, with 95 % intervals), zero-shot, ties, and the worst strata."""
    lines = [
        f"{result['n_images']} images, {result['n_texts']} captions, encoder {result['encoder']}"
        + (f" + adapter {result['adapter']}" if result.get("adapter") else "")
        + (f", split {result['split']}" if result.get("split") else "")
        + (f" ({', '.join(f'{k} {v:.1f} s' for k, v in seconds.items())})" if seconds else "")
    ]
    design = result.get("design") or {}
    weights = "1/inclusion_prob" if design.get("weights") == "inclusion_prob" else "equal (the plan has no π)"
    ci = result.get("ci95")
    lines.append(
        f"weighted: Hájek estimate with weights {weights}; "
        + (
            f"[95 % interval] from {design.get('bootstrap')} stratified bootstrap replicates over "
            f"{design.get('units')} {'sites' if design.get('unit') == 'site_id' else 'samples'} in "
            f"{design.get('strata')} strata (seed {design.get('seed')})"
            if ci
            else "no intervals (--bootstrap 0)"
        )
    )
    flat = _flatten(result)
    width = max([len(n) for n in flat] + [len("metric")])
    cell = 24 if ci else 8
    header = f"{'metric':<{width}}"
    for _, label in DIRECTIONS:
        header += f"  {label + ' mean':>{cell}}  {label + ' weighted':>{cell}}"
    lines.append(header)
    for name, getter in flat.items():
        row = f"{name:<{width}}"
        for direction, _ in DIRECTIONS:
            for section in ("mean", "weighted"):
                row += f"  {_cell(result, section, direction, getter, ci is not None):>{cell}}"
        lines.append(row.rstrip())
    mr = f"{'mR':<{width}}  {_with_ci(result['mR'], _ci(result, 'unweighted', ['mR'])):>{cell}}"
    mr += f"  {_with_ci(result['weighted']['mR'], _ci(result, 'weighted', ['mR'])):>{cell}}"
    lines.append(mr)
    for level, acc in (result.get("zero_shot") or {}).items():
        weighted = result["weighted"]["zero_shot"].get(level, {})
        lines.append(
            f"zero-shot {level}: top-1 {_with_ci(acc['top1'], _ci(result, 'unweighted', ['zero_shot', level, 'top1']))}"
            f" (weighted {_with_ci(weighted.get('top1'), _ci(result, 'weighted', ['zero_shot', level, 'top1']))}),"
            f" top-5 {_fmt(acc['top5'])} (weighted {_fmt(weighted.get('top5'))})"
        )
    lines += _ties(result)
    lines += _worst_strata(result)
    return "\n".join(lines)


def _flatten(result: dict[str, Any]) -> dict[str, list[str]]:
    """Row name → the key path below a direction (``["R@1"]``, ``["mAP@5", "l2"]``)."""
    out: dict[str, list[str]] = {}
    for name, value in result["image_to_text"].items():
        if isinstance(value, dict):
            out.update({f"{name} {level}": [name, level] for level in value})
        else:
            out[name] = [name]
    return out


def _get(tree: Any, path: list[str]) -> Any:
    for key in path:
        if not isinstance(tree, dict):
            return None
        tree = tree.get(key)
    return tree


def _ci(result: dict[str, Any], which: str, path: list[str]) -> list[float] | None:
    return _get(result.get("ci95") or {}, [which, *path])


def _cell(result: dict[str, Any], section: str, direction: str, path: list[str], with_ci: bool) -> str:
    tree = result if section == "mean" else result["weighted"]
    value = _get(tree[direction], path)
    if not with_ci:
        return _fmt(value)
    return _with_ci(value, _ci(result, "unweighted" if section == "mean" else "weighted", [direction, *path]))


def _with_ci(value: float | None, bounds: list[float] | None) -> str:
    if bounds is None:
        return _fmt(value)
    return f"{_fmt(value)} [{bounds[0]:.3f}, {bounds[1]:.3f}]"


def _ties(result: dict[str, Any]) -> list[str]:
    ties = result.get("ties")
    if not ties:
        return []
    k = min(result["k"])
    parts = []
    for direction, label in DIRECTIONS:
        entry = ties.get(direction) or {}
        boundary = (entry.get("boundary_ties") or {}).get(str(k), 0)
        depends = (entry.get("recall_depends_on_order") or {}).get(str(k), 0)
        low, high = (entry.get("recall_range") or {}).get(f"R@{k}", [None, None])
        text = f"{label}: {boundary} queries with exact ties at the rank-{k} cut-off"
        if depends:
            text += f", R@{k} depends on their order for {depends} (range {_fmt(low)}–{_fmt(high)})"
        parts.append(text)
    return [f"ties (--ties {ties['policy']}): " + "; ".join(parts)]


def _worst_strata(result: dict[str, Any]) -> list[str]:
    per = result.get("per_stratum") or {}
    if not per:
        return []
    key = f"R@{min(result['k'])}"
    lines = ["", f"per stratum, worst first by weighted mR (queries of the stratum against all items; {key} weighted):"]
    rows = [(dim, value, s) for dim, values in per.items() for value, s in values.items()]
    w_dim = max(len("dimension"), *(len(d) for d, _, _ in rows))
    w_val = max(len("value"), *(min(len(v), 32) for _, v, _ in rows))
    cell = 22 if result.get("ci95") else 8
    lines.append(
        f"{'dimension':<{w_dim}}  {'value':<{w_val}}  {'images':>6}  {'captions':>8}  "
        f"{key + ' i→t':>{cell}}  {key + ' t→i':>{cell}}  {'mR':>{cell}}"
    )
    for dim, values in per.items():
        ordered = sorted(values.items(), key=lambda item: _order(item[1]))
        for value, s in ordered[:WORST]:
            w = s["weighted"]
            # A stratum value of one site has no interval (metrics.json: ci95 null); say so rather than print none.
            alone = " [one site]" if result.get("ci95") and not s.get("ci95") else ""
            lines.append(
                f"{dim:<{w_dim}}  {value[:32]:<{w_val}}  {s['n_images']:>6}  {s['n_texts']:>8}  "
                f"{_with_ci(w['image_to_text'].get(key), _ci(s, 'weighted', ['image_to_text', key])) + alone:>{cell}}  "
                f"{_with_ci(w['text_to_image'].get(key), _ci(s, 'weighted', ['text_to_image', key])) + alone:>{cell}}  "
                f"{_with_ci(w['mR'], _ci(s, 'weighted', ['mR'])) + alone:>{cell}}"
            )
        if len(ordered) > WORST:
            lines.append(f"{dim:<{w_dim}}  … {len(ordered) - WORST} more values (DS/eval/metrics.json has all)")
    return lines


def _order(summary: dict[str, Any]) -> float:
    value = summary["weighted"]["mR"]
    return 2.0 if value is None else value


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.4f}"
