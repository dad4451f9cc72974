"""Figures (matplotlib, Agg backend)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from pra.io import atomic_path
from pra.config import ILL_POSED_METHODS
from pra.report.tables import run_label


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams["svg.hashsalt"] = "pra"
    return plt


def save(fig, out_path: str | Path) -> list[Path]:
    """PNG (150 dpi) and PDF next to each other; PDF metadata without a creation date (reproducible)."""
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_path.with_suffix(".png")) as tmp:
        fig.savefig(tmp, format="png", dpi=150, metadata={"Software": None})
    with atomic_path(out_path.with_suffix(".pdf")) as tmp:
        fig.savefig(tmp, format="pdf", metadata={"CreationDate": None, "Creator": None, "Producer": None})
    return [out_path.with_suffix(".png"), out_path.with_suffix(".pdf")]


def pick_per_class(images: np.ndarray, labels: np.ndarray, num_classes: int, k: int) -> np.ndarray:
    """The first k images of each class, class-major: [num_classes * k, H, W, C]."""
    out = []
    for c in range(num_classes):
        idx = np.flatnonzero(labels == c)[:k]
        sel = images[idx]
        if len(sel) < k:
            sel = np.concatenate([sel, np.zeros((k - len(sel),) + images.shape[1:], images.dtype)])
        out.append(sel)
    return np.concatenate(out)


def tile(images: np.ndarray, cols: int, pad: int = 1) -> np.ndarray:
    n, H, W, C = images.shape
    rows = (n + cols - 1) // cols
    canvas = np.full((rows * (H + pad) + pad, cols * (W + pad) + pad, C), 255, np.uint8)
    for i, im in enumerate(images):
        r, c = divmod(i, cols)
        canvas[pad + r * (H + pad): pad + r * (H + pad) + H, pad + c * (W + pad): pad + c * (W + pad) + W] = im
    return canvas


def sample_grid(panels: list[tuple[str, np.ndarray, np.ndarray]], num_classes: int, out_path: str | Path,
                per_class: int = 4, title: str = "", cols: int = 2) -> None:
    """One panel per (name, images, labels): classes left to right, per_class samples top to bottom."""
    plt = _plt()
    rows = (len(panels) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, (0.42 * per_class + 0.5) * rows + 0.4),
                             squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (name, images, labels) in zip(axes.flat, panels):
        chosen = pick_per_class(images, labels, num_classes, per_class)            # class-major
        chosen = chosen.reshape(num_classes, per_class, *chosen.shape[1:]).swapaxes(0, 1)
        grid = tile(chosen.reshape(-1, *chosen.shape[2:]), cols=num_classes)      # row = sample index
        ax.imshow(grid.squeeze(-1) if grid.shape[-1] == 1 else grid, cmap="gray", vmin=0, vmax=255,
                  interpolation="nearest")
        ax.set_title(name, fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    save(fig, out_path)
    plt.close(fig)


METHOD_COLORS = {"pixel_tf": "#7f7f7f", "pixel_noise": "#bcbd22", "latent_tf": "#1f77b4", "latent_pixel_noise": "#17becf",
                 "pra": "#d62728", "energy_matched": "#e377c2", "pra_sequential": "#9467bd",
                 "parallel_anchored": "#8c564b", "anchored_rollout": "#2ca02c", "free_rollout": "#ff7f0e"}
CONSTRUCTION_COLORS = {"teacher_forcing": "#1f77b4", "reconstruction": "#17becf", "pixel_noise": "#bcbd22",
                       "pra": "#d62728", "energy_matched": "#e377c2", "pra_sequential": "#9467bd",
                       "parallel_anchored": "#8c564b", "anchored_rollout": "#2ca02c", "rollout_null": "0.45"}


def color_of(method: str, i: int = 0) -> str:
    return METHOD_COLORS.get(method, f"C{i % 10}")


def arm_colors(arms: dict) -> dict:
    """arm name -> method  =>  arm name -> colour. Each arm takes its method's colour; where several arms share a
    method (pra and pra at t_min 1, say), the arm named after the method (else the first) keeps it and the others
    get lighter tints of it, so no two arms of one figure share a colour."""
    by_method: dict = {}
    for name, method in arms.items():
        by_method.setdefault(method, []).append(name)
    out, methods = {}, list(by_method)
    for method, names in by_method.items():
        names = sorted(names, key=lambda n: (n != method, list(arms).index(n)))
        for j, name in enumerate(names):
            out[name] = tint(color_of(method, methods.index(method)), j, len(names))
    return out


def tint(color: str, j: int, n: int) -> str:
    """The j-th of n tints of one colour: the colour itself for j = 0, lighter for later j (never white)."""
    from matplotlib.colors import to_hex, to_rgb

    base = np.array(to_rgb(color))
    return to_hex(base + (1 - base) * (0.5 * j / max(n, 1)))


def run_styles(keys) -> dict:
    """(scale, method, variant, seed) -> {"color", "dash", "marker", "label"} for the per-run line figures.
    One colour per (method, variant): the method's colour for its base variant and lighter tints of it for the
    others (as arm_colors gives the arms of an ablation);
    one dash and marker per scale; seeds of one (scale, method, variant) share its style, and the first of
    them carries the legend entry, which names the group and its seeds (the other seeds' labels are None)."""
    keys = sorted(keys)
    variants: dict = {}
    for scale, method, variant, _ in keys:
        variants.setdefault(method, [])
        if variant not in variants[method]:
            variants[method].append(variant)
    scales = list(dict.fromkeys(k[0] for k in keys))
    seeds: dict = {}
    for scale, method, variant, seed in keys:
        seeds.setdefault((scale, method, variant), []).append(seed)
    out, methods = {}, list(variants)
    for scale, method, variant, seed in keys:
        vs = variants[method]
        group = seeds[(scale, method, variant)]
        first = seed == group[0]
        name = run_label((scale, method, variant, seed)).rsplit(" s", 1)[0]
        label = f"{name} s{seed}" if len(group) == 1 else f"{name} ({len(group)} seeds: {_seed_list(group)})"
        order = sorted(vs, key=lambda x: (x != "base", vs.index(x)))  # the base variant keeps the method's colour
        out[(scale, method, variant, seed)] = {
            "color": tint(color_of(method, methods.index(method)), order.index(variant), len(vs)),
            "dash": ["-", "--", ":", "-."][scales.index(scale) % 4],
            "marker": "os^vD"[scales.index(scale) % 5],
            "label": label if first else None}
    return out


def _seed_list(seeds: list) -> str:
    s = sorted(seeds)
    if s == list(range(s[0], s[-1] + 1)) and len(s) > 2:
        return f"s{s[0]}-s{s[-1]}"
    return ", ".join(f"s{x}" for x in s)


def finish_below(fig, axes, out_path: str | Path, fontsize: int = 7) -> None:
    """Grids, one legend for the whole figure below the axes (never over the curves), PNG + PDF, close.
    Legend entries are collected from every axis, each label once."""
    for ax in axes:
        ax.grid(alpha=0.3)
    handles = {}
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(lab, h)
    w, h = fig.get_size_inches()
    entry = 0.45 + 0.056 * fontsize / 7 * max(map(len, handles), default=0)  # inches: marker + text
    ncol = max(1, min(len(handles), 4, int(w // entry)))
    rows = -(-len(handles) // ncol)
    extra = 0.2 + 0.17 * rows * fontsize / 7
    fig.set_size_inches(w, h + extra)
    fig.legend(list(handles.values()), list(handles), loc="lower center", ncol=ncol, fontsize=fontsize,
               frameon=False)
    fig.tight_layout(rect=(0, extra / (h + extra), 1, 1))
    save(fig, out_path)
    _plt().close(fig)


def training_curves(logs: dict, out_path: str | Path) -> None:
    """logs: (scale, method, variant, seed) -> list of log rows. Head loss and reconstruction loss vs step;
    styles from run_styles."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    styles = run_styles(logs)
    for key, rows in sorted(logs.items()):
        st = styles[key]
        kw = dict(color=st["color"], lw=1.3, label=st["label"])
        steps = [r["step"] for r in rows]
        axes[0].plot(steps, [r["loss_head"] for r in rows], st["dash"], **kw)
        if rows and "loss_recon" in rows[0]:
            axes[1].plot(steps, [r["loss_recon"] for r in rows], st["dash"], **kw)
    axes[0].set(xlabel="training step", ylabel="flow-matching loss of the head (v-loss)", yscale="log",
                title="head loss (z for latent methods, the 64-d patch for pixel methods)")
    axes[1].set(xlabel="training step", ylabel="pixel reconstruction MSE ([-1, 1] pixels)", yscale="log",
                title="reconstruction D(z, h) vs x (latent methods)")
    finish_below(fig, axes, out_path)


def along_training(along: dict, out_path: str | Path) -> None:
    """along: (scale, method, variant, seed) -> along_training.json. Proxy FID (left) and class agreement
    (right) against the training step; solid: EMA weights, dashed: raw weights; colours and markers from
    run_styles (one colour per method and variant, one marker per scale)."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    styles = run_styles(along)
    for key, d in sorted(along.items()):
        st = styles[key]
        for weights, ls in (("ema", "-"), ("raw", "--")):
            rows = sorted((r for r in d["rows"] if r["weights"] == weights), key=lambda r: r["step"])
            steps = [r["step"] for r in rows]
            kw = dict(color=st["color"], lw=1.3, marker=st["marker"], ms=3)
            label = st["label"] if weights == "ema" else None
            axes[0].plot(steps, [r["fid"] for r in rows], ls, label=label, **kw)
            if rows and "class_accuracy" in rows[0]:
                axes[1].plot(steps, [r["class_accuracy"] for r in rows], ls, **kw)
    axes[0].set(xlabel="training step", ylabel="proxy FID (classifier features)", yscale="log",
                title="proxy FID along training (solid EMA, dashed raw)")
    axes[1].set(xlabel="training step", ylabel="class agreement of the proxy samples", ylim=(0, 1),
                title="class agreement along training")
    finish_below(fig, axes, out_path)


def guidance_sweep(guidance: dict, out_path: str | Path) -> None:
    """guidance: (scale, method, variant, seed) -> guidance.json. Proxy FID against the guidance scale per
    run; the chosen scale circled; styles from run_styles."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    styles = run_styles(guidance)
    for key, g in sorted(guidance.items()):
        st = styles[key]
        xs = [r["cfg_scale"] for r in g["rows"]]
        ys = [float("nan") if r["fid"] is None else r["fid"] for r in g["rows"]]  # None: non-finite samples
        ax.plot(xs, ys, st["dash"], marker=st["marker"], color=st["color"], ms=3, lw=1.3, label=st["label"])
        best = next(r for r in g["rows"] if r["cfg_scale"] == g["chosen"])
        ax.plot([best["cfg_scale"]], [best["fid"]], "o", ms=10, mfc="none", color=st["color"])
    ax.set(xlabel="guidance scale (at the last AR position)", ylabel="proxy FID", yscale="log",
           title="guidance sweep on a proxy sample (circle: chosen)")
    finish_below(fig, [ax], out_path, fontsize=6)


def approximation(approx: dict, out_path: str | Path, title: str = "") -> None:
    """approx: variant -> approximation.json. Per AR position: PRA's and the twin's distance to the anchored
    rollout's input over the anchored rollout's distance to the data; positions outside the content positions
    hatched, and the title says how many are content positions."""
    plt = _plt()
    models = [k for k, a in approx.items() if a.get("applicable")]
    fig, axes = plt.subplots(1, max(1, len(models)), figsize=(3.2 * max(1, len(models)), 3.4), squeeze=False,
                             sharey=True)
    for ax, name in zip(axes[0], models):
        a = approx[name]
        for j in set(a["positions"]) - set(a["content_positions"]):
            ax.axvspan(j - 0.5, j + 0.5, facecolor="none", edgecolor="0.75", hatch="///", lw=0)
        for k, color in (("pra", color_of("pra")), ("twin", color_of("pra_sequential"))):
            r = [np.nan if v is None else v for v in a["constructions"][k]["ratio"]]
            ax.plot(a["positions"], r, "-o", ms=2.5, lw=1.2, color=color, label=k)
        ax.set(title=name, xlabel="AR position")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("distance to the anchored rollout's input\n/ its distance to the data")
    axes[0][0].legend(fontsize=7)
    counts = {(len(approx[m]["content_positions"]), len(approx[m]["positions"])) for m in models}
    content = (f"all {next(iter(counts))[1]} positions are content positions"
               if len(counts) == 1 and len({c for c in next(iter(counts))}) == 1
               else "hatched: not a content position (left out of the table's averages)")
    fig.suptitle((title or "approximation error per position") + f"\n({content})", fontsize=9)
    fig.tight_layout()
    save(fig, out_path)
    plt.close(fig)


def input_gap(gaps: dict, out_path: str | Path, title: str = "", per_row: int = 3) -> None:
    """gaps: variant -> gap.json. One block of two panels per model (top: pixel inputs, bottom: trunk states),
    per_row models to a row. Each construction's MMD^2 to the model's own rollout per position, the null (a second
    rollout) in grey with its permutation 95% band; positions outside the content positions (those the summaries
    average over) are hatched, and the title says how many positions are content positions."""
    from matplotlib.lines import Line2D

    plt = _plt()
    models = list(gaps)
    cols = min(per_row, len(models))
    bands = -(-len(models) // cols)
    fig, axes = plt.subplots(2 * bands, cols, figsize=(4.2 * cols + 0.6, 3.0 * 2 * bands + 1.2), squeeze=False)
    handles: dict = {}
    n_content, n_pos = set(), set()
    for j, name in enumerate(models):
        g = gaps[name]
        band, col = divmod(j, cols)
        for row, space in enumerate(("inputs", "hidden")):
            ax = axes[2 * band + row, col]
            res = g["spaces"][space]
            pos = res["positions"]
            content = set(res.get("content_positions", pos))
            n_content.add(len(content))
            n_pos.add(len(pos))
            for x in pos:
                if x not in content:
                    ax.axvspan(x - 0.5, x + 0.5, facecolor="none", edgecolor="0.75", hatch="///", lw=0)
            null = res["sets"].get("rollout_null")
            if null is not None:
                handles.setdefault("95% of the permutation null", ax.fill_between(
                    pos, 0, null["mmd2_perm_q95"], color="0.85", step="mid"))
            for c in sorted(res["sets"], key=lambda c: list(CONSTRUCTION_COLORS).index(c)
                            if c in CONSTRUCTION_COLORS else 99):
                style = dict(color=CONSTRUCTION_COLORS.get(c, "k"), lw=1.2, ms=3)
                (line,) = ax.plot(pos, res["sets"][c]["mmd2"], "--" if c == "rollout_null" else "o-", **style)
                handles.setdefault("null: a second rollout" if c == "rollout_null" else c.replace("_", " "), line)
            ax.xaxis.get_major_locator().set_params(integer=True)
            ax.axhline(0, color="k", lw=0.6)
            ax.grid(alpha=0.3)
            ax.tick_params(labelsize=8)
            ax.set_title(f"model: {name} — " + ("pixel inputs" if space == "inputs" else "trunk states"), fontsize=10)
            if col == 0:
                ax.set_ylabel("MMD² to own rollout\n" + ("pixel inputs x~_i" if space == "inputs" else
                                                          "trunk states h_i"), fontsize=9)
            if row == 1:
                ax.set_xlabel("AR position i", fontsize=9)
    for k in range(len(models), bands * cols):
        band, col = divmod(k, cols)
        axes[2 * band, col].axis("off")
        axes[2 * band + 1, col].axis("off")
    if any(c < p for c, p in zip(sorted(n_content), sorted(n_pos))):
        handles["not a content position (hatched)"] = Line2D([], [], color="0.75", lw=6, alpha=0.6)
    fig.legend(list(handles.values()), list(handles), loc="lower center", ncol=min(len(handles), 6), fontsize=9,
               frameon=False, title="training-input construction (each model's own); lines that coincide overlap (at "
                                    "t_min = 1 no perturbation is drawn: pra, energy matched and parallel anchored "
                                    "inputs are the reconstruction)", title_fontsize=9)
    st = gaps[models[0]]["settings"]
    content_text = (f"all {max(n_pos)} positions are content positions" if n_content == n_pos and len(n_pos) == 1
                    else f"content positions (averaged in the gap table): {'/'.join(map(str, sorted(n_content)))} "
                         f"of {max(n_pos)}; the others hatched")
    fig.suptitle((title + "\n" if title else "") + f"unbiased MMD², Gaussian kernel, fixed {st['pca_dim']}-d PCA basis, "
                 f"{st['images']} held-out images; {content_text}; the trunk state h_i follows input i − 1 "
                 "(intervals and Gaussian KL: gap table)", fontsize=11)
    fig.tight_layout(rect=(0, 0.06 + 0.02 / bands, 1, 1))
    save(fig, out_path)
    plt.close(fig)


def error_accumulation(accs: dict, out_path: str | Path, title: str = "") -> None:
    """accs: variant -> (method, accumulation.json). Left: the region's excess D(k) - D(0) against the
    content-weighted exposure E(k) of the k own prefix positions, with 95% intervals, the fitted growth curve and,
    as grey bars, the 95% band of the excess under within-image swaps (what it reads when nothing accumulates).
    Right, where a classifier was given: the feedback effect per k (the no-feedback control's agreement of the
    completed images with their labels minus the own rollout's) with its 95% interval, each arm's own agreement
    at the ends in its label; else D(k) beside the real-vs-real floor."""
    plt = _plt()
    fig, (a, b) = plt.subplots(1, 2, figsize=(13, 4.8))
    agreement = all("agreement" in acc for _, acc in accs.values())
    n = len(accs)
    colors = arm_colors({name: method for name, (method, _) in accs.items()})
    for i, (name, (method, acc)) in enumerate(accs.items()):
        c = colors[name]
        ks, e = acc["ks"], np.asarray(acc["exposure"])
        dx = (i - (n - 1) / 2) * 0.06 * max(e.max(), 1e-9) / max(n, 1)  # side by side at each exposure
        band = acc.get("null_band_excess") or {}
        for k, ek in zip(ks[1:], e[1:]):
            if str(k) in band:
                lo, hi = band[str(k)]
                a.plot([ek + dx, ek + dx], [lo, hi], color="0.6", lw=4, alpha=0.35, solid_capstyle="butt")
        ex = np.array([0.0] + [acc["excess"][str(k)] for k in ks[1:]])
        ci = np.array([[0.0, 0.0]] + [acc["ci_excess"][str(k)] or [np.nan, np.nan] for k in ks[1:]])
        g = acc.get("growth")
        ill = method in ILL_POSED_METHODS
        lab = f"{name}" + (f" (β = {g['beta']:.2f})" if g else "") + (" (ill-posed: not read)" if ill else "")
        a.errorbar(e + dx, ex, yerr=[ex - ci[:, 0], ci[:, 1] - ex], fmt="o", ms=3, color=c, capsize=2, lw=1,
                   label=lab)
        if g:
            grid = np.linspace(0, e.max(), 100)
            a.plot(grid, g["c"] * grid ** g["beta"], "-", color=c, lw=1)
        if agreement:
            fe = np.array([acc["feedback_effect"][str(k)] for k in ks])
            cis = acc.get("ci_feedback_effect") or {}  # per k (recorded since the per-k intervals)
            ci_fe = np.array([cis.get(str(k)) or [np.nan, np.nan] for k in ks])
            dk = (i - (n - 1) / 2) * 0.5 / max(n, 1)
            b.errorbar(np.asarray(ks) + dk, fe, yerr=[fe - ci_fe[:, 0], ci_fe[:, 1] - fe], fmt="o-", ms=3,
                       color=c, capsize=2, lw=1, label=f"{name}: {acc['agreement'][str(ks[0])]:.2f} → "
                       f"{acc['agreement'][str(ks[-1])]:.2f}" + (" (ill-posed: not read)" if ill else ""))
        else:
            b.plot(ks, [acc["distance"][str(k)] for k in ks], "o-", ms=3, color=c, lw=1.2, label=name)
            lo_f, hi_f = acc["ci_distance"]["floor"]
            b.axhspan(lo_f, hi_f, color="0.5", alpha=0.15)
    a.axhline(0, color="k", lw=0.6)
    a0 = next(iter(accs.values()))[1]
    a.set(xlabel="exposure E(k): summed ink share of the k own prefix positions",
          ylabel="region excess D(k) − D(0)\n(class-conditional MMD², paired)",
          title=f"region {a0['region_positions'][0]}–{a0['region_positions'][-1]} after k own positions\n"
                "(whiskers: 95% subsampling intervals; grey bars: 95% of the swap null)")
    if agreement:
        b.axhline(0, color="k", lw=0.6)
        b.set(xlabel="k (own prefix positions before the region)",
              ylabel="feedback effect\n(agreement: control − own)",
              title="what feeding own patches back costs the classifier's agreement\n(whiskers: 95% intervals "
                    "for paired proportions, Newcombe; legend: own\nrollout's agreement at k = "
                    f"{a0['ks'][0]} → k = {a0['ks'][-1]})")
    else:
        b.set(xlabel="k (own prefix positions before the region)", ylabel="D(k): region MMD² to real regions",
              title="distance per k (grey band: real-vs-real floor)")
    for ax in (a, b):
        ax.grid(alpha=0.3)
    a.legend(fontsize=7)
    b.legend(fontsize=6.5, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.16), frameon=False)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    save(fig, out_path)
    plt.close(fig)


FAMILY_MARKERS = {"pixel AR": "s", "pixel diffusion": "^", "pixel flow": "D", "latent AR (reference)": "x"}
# label offsets (points) of published models whose labels would otherwise overlap a neighbour or PRA's line
LABEL_OFFSETS = {"MAR-B": (-6, -12), "PixelFlow-XL/4": (6, -12), "JiT-H/16": (4, 3), "PixNerd-XL/16": (4, 2),
                 "PRA-L": (-6, 6), "JiT-L/16": (-12, 5)}


def fid_vs_params(published_rows: list, measured: list[dict], out_path: str | Path,
                  dataset: str = "embedded digits 32x32") -> None:
    """Left: published ImageNet-256 FID-50K vs parameters (PRA's scales joined; one marker per family). Right: this
    pipeline's runs: FID against parameters, one line per (method, variant) over its scales, where at least two
    scales were measured; otherwise every run's FID on one axis (with one model size there is no trend to draw)."""
    from matplotlib.lines import Line2D

    plt = _plt()
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2))
    pra = [(p, f) for m, fam, p, f, _, _ in published_rows if m.startswith("PRA-")]
    a.plot([p for p, _ in pra], [f for _, f in pra], "o-", color=METHOD_COLORS["pra"], label="PRA S/B/L (paper)")
    families = []
    for m, fam, p, f, _, _ in published_rows:
        if m.startswith("PRA-"):
            a.annotate(m, (p, f), textcoords="offset points", xytext=LABEL_OFFSETS.get(m, (4, 4)), fontsize=7)
            continue
        a.scatter([p], [f], marker=FAMILY_MARKERS.get(fam, "o"), color="0.45", s=22)
        a.annotate(m, (p, f), textcoords="offset points", xytext=LABEL_OFFSETS.get(m, (4, -8)), fontsize=6,
                   color="0.3")
        families += [fam] if fam not in families else []
    a.set(xscale="log", xlabel="parameters (millions, log scale)", ylabel="FID-50K (lower is better)",
          title="ImageNet 256x256, published numbers")
    _plain_log_ticks(a, [100, 200, 500, 1000, 2000])
    a.grid(alpha=0.3)
    handles = [Line2D([], [], color=METHOD_COLORS["pra"], marker="o", label="PRA S/B/L (paper)")]
    handles += [Line2D([], [], color="0.45", marker=FAMILY_MARKERS.get(f, "o"), ls="", label=f) for f in families]
    a.legend(handles=handles, fontsize=7, title="other models (grey), by family", title_fontsize=7)
    scales = {r["scale"] for r in measured}
    if len(scales) >= 2:
        groups: dict = {}
        for r in measured:
            name = run_label((r["scale"], r["method"], r.get("variant", "base"), r["seed"])).split(" ", 1)[1]
            groups.setdefault(name.rsplit(" s", 1)[0], []).append((r["params"] / 1e6, r["fid"], r["scale"], r["method"]))
        colors = arm_colors({name: pts[0][3] for name, pts in groups.items()})
        for k, (name, pts) in enumerate(sorted(groups.items())):
            pts.sort()
            b.plot([p for p, *_ in pts], [f for _, f, *_ in pts], "o-", color=colors[name], label=name)
            for p, f, sc, _ in pts if k == 0 else ():  # the scales named once, along the first line
                b.annotate(sc, (p, f), textcoords="offset points", xytext=(4, 4), fontsize=7)
        b.set(xscale="log", xlabel="parameters (millions, log scale)",
              ylabel="FID (classifier features; lower is better)", title=f"{dataset}, measured here")
        _plain_log_ticks(b, [0.1, 0.2, 0.3, 0.5, 1, 2, 3, 5, 10, 20, 50, 100, 200, 500, 1000])
        b.grid(alpha=0.3)
        b.legend(fontsize=7)
    else:
        rows = sorted(measured, key=lambda r: r["fid"])
        labels = [run_label((r["scale"], r["method"], r.get("variant", "base"), r["seed"]))
                  + f" ({r['params'] / 1e6:.2g}M)" for r in rows]
        colors = arm_colors({lab: r["method"] for lab, r in zip(labels, rows)})
        ys = np.arange(len(rows))[::-1]
        for y, lab, r in zip(ys, labels, rows):
            b.plot([r["fid"]], [y], "o", color=colors[lab])
            b.annotate(f"{r['fid']:.3g}", (r["fid"], y), textcoords="offset points", xytext=(5, -3), fontsize=7)
        b.set_yticks(ys, labels, fontsize=7)
        b.set_xlim(0, max(r["fid"] for r in rows) * 1.15 if rows else 1)
        b.set(xlabel="FID (classifier features; lower is better)",
              title=f"{dataset}, measured here: FID per run\n(one scale: no trend over model size to draw)")
        b.title.set_fontsize(10)
        b.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    save(fig, out_path)
    plt.close(fig)


def ablation_fid(summaries: dict, out_path: str | Path) -> None:
    """One panel per ablation: FID of every variant, mean ± sd over seeds and one dot per seed, each in its arm's
    colour (arm_colors: the method's colour, lighter tints where arms share a method, as in the other figures);
    the ablation's reference variant has a black outline and '(reference)' under its name, an ill-posed arm
    (pra.config.ILL_POSED_METHODS) says that it is not read."""
    import textwrap

    plt = _plt()
    n = len(summaries)
    cols = min(n, 3)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(max(4.2 * cols, 6.5), 3.6 * rows), squeeze=False)
    for ax, (name, s) in zip(axes.flat, summaries.items()):
        variants = [v for v in s["variants"] if "fid" in v["metrics"]]
        ref = next((v for v in s["variants"] if v["name"] == s.get("reference")), None)
        colors = arm_colors({v["name"]: v["method"] for v in variants})
        for i, v in enumerate(variants):
            m = v["metrics"]["fid"]
            c = colors[v["name"]]
            ax.bar(i, m["mean"], color=c, alpha=0.45, width=0.7)
            if v is ref:
                ax.bar(i, m["mean"], fill=False, edgecolor="k", linewidth=1.4, width=0.7)
            if m["std"] is not None:
                ax.errorbar(i, m["mean"], yerr=m["std"], color=c, capsize=4, lw=1.2)
            ax.scatter([i] * len(m["values"]), m["values"], color=c, s=12, zorder=3)
        ax.set_xticks(range(len(variants)))
        ax.set_xticklabels(["\n".join(textwrap.wrap(v["name"], 14)) + ("\n(reference)" if v is ref else "")
                            + ("\n(ill-posed:\nnot read)" if v["method"] in ILL_POSED_METHODS else "")
                            for v in variants], fontsize=7)
        seeds = len(s["seeds"])
        ax.set(title=f"{name} ({s['scale']}, {seeds} seed{'s' if seeds > 1 else ''})", ylabel="FID (lower is better)")
        ax.grid(alpha=0.3, axis="y")
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.suptitle("FID per ablation variant: bar = mean, whisker = sd over seeds, dots = seeds", fontsize=9)
    fig.tight_layout()
    save(fig, out_path)
    plt.close(fig)


def _plain_log_ticks(ax, ticks) -> None:
    from matplotlib.ticker import FixedLocator, NullLocator

    lo, hi = ax.get_xlim()
    ax.xaxis.set_major_locator(FixedLocator([t for t in ticks if lo <= t <= hi] or ticks))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticklabels([f"{t:g}" for t in ax.get_xticks()])


def save_all(fn, *args, **kwargs) -> list[Path]:
    """Call a figure function whose last positional argument is the output path; return the PNG and PDF."""
    fn(*args, **kwargs)
    out = Path(args[-1])
    return [out.with_suffix(".png"), out.with_suffix(".pdf")]
