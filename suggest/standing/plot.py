"""The learning curve drawn two ways: characters for `suggest status`, a PNG on request (matplotlib, Agg)."""

from __future__ import annotations

from pathlib import Path

ESTIMATES = (("out_of_fold", "o", "out-of-fold"), ("audit", "a", "audit slice"), ("agreement", "g", "agreement"))


def ascii_curve(points: list[dict], width: int = 60, height: int = 10) -> str:
    """Accuracy estimates (y, 0-1 scaled to the data) against labels held (x), one letter per estimate."""
    series = [(mark, [(p["labels"], p[key]["estimate"]) for p in points if (p.get(key) or {}).get("estimate")
                      is not None]) for key, mark, _ in ESTIMATES]
    values = [v for _, pts in series for _, v in pts]
    if not values:
        return "learning curve: no estimates yet (computed after each retrain)"
    xs = [x for _, pts in series for x, _ in pts]
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(values), max(values)
    if y1 - y0 < 0.02:
        y0, y1 = max(0.0, y0 - 0.01), min(1.0, y1 + 0.01)
    grid = [[" "] * width for _ in range(height)]
    for mark, pts in series:
        for x, v in pts:
            col = 0 if x1 == x0 else round((x - x0) / (x1 - x0) * (width - 1))
            row = height - 1 - round((v - y0) / (y1 - y0) * (height - 1)) if y1 > y0 else height // 2
            grid[row][col] = mark
    lines = [f"{(y1 - (y1 - y0) * i / (height - 1)):6.3f} |" + "".join(r) for i, r in enumerate(grid)]
    lines.append("       +" + "-" * width)
    lines.append(f"        {x0:<{width // 2}d}{x1:>{width - width // 2}d}  labels")
    lines.append("        " + ", ".join(f"{m} = {name}" for _, m, name in ESTIMATES))
    return "\n".join(lines)


def png_curve(points: list[dict], path: Path, title: str = "") -> Path:
    """A PNG of the learning curve: each estimate with its 95% interval as a band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for key, _, name in ESTIMATES:
        pts = [p for p in points if (p.get(key) or {}).get("estimate") is not None]
        if not pts:
            continue
        x = [p["labels"] for p in pts]
        ax.plot(x, [p[key]["estimate"] for p in pts], marker="o", label=name)
        ax.fill_between(x, [p[key]["low"] for p in pts], [p[key]["high"] for p in pts], alpha=0.15)
    ax.set_xlabel("labels held")
    ax.set_ylabel("accuracy (95% interval)")
    ax.set_title(title or "learning curve")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


__all__ = ["ascii_curve", "png_curve"]
