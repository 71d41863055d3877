"""A method's indicators from its evaluated points: mean point per weight over seeds, the front
of those means, hypervolume against the reference points and the floor (per seed, then over
seeds) and the best value per objective. Used by the run's summary and by `report.merge`."""

from __future__ import annotations

import numpy as np

from . import pareto, stats


def method_indicators(entry: dict, ref_points: dict, floor: list[float] | None, objectives: list[tuple[str, bool]],
                      seeds: list[int], eval_se: dict | None = None) -> None:
    """Fill a method entry's `mean_points` (mean over seeds per w), `front` (of those means),
    `hypervolume` / `hypervolume_floor` (per seed, then over seeds; only for an ok method) and
    `best` from its `points`. Used by the run and by `report.merge`."""
    maximize = [hib for _, hib in objectives]
    by_w: dict[tuple, list[list[float]]] = {}
    for pt in entry["points"]:
        by_w.setdefault(tuple(pt["w"]), []).append(pt["scores"])
    mean_points = [{"w": list(w), "scores": np.mean(v, axis=0).tolist(), "n_seeds": len(v)} for w, v in by_w.items()]
    entry["mean_points"] = mean_points
    entry["front"], entry["hypervolume"], entry["hypervolume_floor"] = [], None, None
    if mean_points and entry["status"] == "ok":
        arr = np.array([m["scores"] for m in mean_points])
        entry["front"] = [mean_points[i] for i in pareto.pareto_front(arr, maximize)]
        se = eval_se or {}
        entry["hypervolume"] = stats.hv_stats(entry["points"], ref_points, maximize, seeds, se.get("hypervolume"))
        if floor is not None:
            entry["hypervolume_floor"] = stats.hv_stats(entry["points"], {s: floor for s in seeds}, maximize, seeds,
                                                        se.get("hypervolume_floor"))
    entry["best"] = ({name: (max if hib else min)(m["scores"][i] for m in mean_points)
                      for i, (name, hib) in enumerate(objectives)} if mean_points else {})
