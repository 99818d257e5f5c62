"""The readable text summary of an evaluation: every metric, zero-shot, and R@1 per stratum."""

from __future__ import annotations

from typing import Any

DIRECTIONS = (("image_to_text", "image→text"), ("text_to_image", "text→image"))


def metrics_table(result: dict[str, Any], seconds: dict[str, float] | None = None) -> str:
    """Overall metrics (one line per metric, both directions), zero-shot accuracy and R@K per stratum (smallest K)."""
    lines = [
        f"{result['n_images']} images, {result['n_texts']} captions, encoder {result['encoder']}"
        + (f", split {result['split']}" if result.get("split") else "")
        + (f" ({', '.join(f'{k} {v:.1f} s' for k, v in seconds.items())})" if seconds else "")
    ]
    rows = [(name, [result[d].get(name) for d, _ in DIRECTIONS]) for name in result["image_to_text"]]
    flat: list[tuple[str, list[Any]]] = []
    for name, values in rows:
        if isinstance(values[0], dict):
            flat += [(f"{name} {level}", [v[level] for v in values]) for level in values[0]]
        else:
            flat.append((name, values))
    width = max([len(n) for n, _ in flat] + [len("metric")])
    lines.append(f"{'metric':<{width}}  {'image→text':>10}  {'text→image':>10}")
    lines += [f"{name:<{width}}  {_fmt(a):>10}  {_fmt(b):>10}" for name, (a, b) in flat]
    lines.append(f"{'mR':<{width}}  {_fmt(result['mR']):>10}")
    for level, acc in (result.get("zero_shot") or {}).items():
        lines.append(f"zero-shot {level}: top-1 {_fmt(acc['top1'])}, top-5 {_fmt(acc['top5'])}")
    if result.get("per_stratum"):
        lines.append("")
        lines.append("per stratum (queries of the stratum against all items):")
        strata = [(dim, value, s) for dim, values in result["per_stratum"].items() for value, s in values.items()]
        w_dim = max(len("dimension"), *(len(d) for d, _, _ in strata))
        w_val = max(len("value"), *(len(v) for _, v, _ in strata))
        key = f"R@{min(result['k'])}"
        lines.append(
            f"{'dimension':<{w_dim}}  {'value':<{w_val}}  {'images':>6}  {'captions':>8}  "
            f"{key + ' i→t':>8}  {key + ' t→i':>8}  {'mR':>6}"
        )
        for dim, value, s in strata:
            lines.append(
                f"{dim:<{w_dim}}  {value:<{w_val}}  {s['n_images']:>6}  {s['n_texts']:>8}  "
                f"{_fmt(s['image_to_text'].get(key)):>8}  {_fmt(s['text_to_image'].get(key)):>8}  "
                f"{_fmt(s['mR']):>6}"
            )
    return "\n".join(lines)


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.4f}"
