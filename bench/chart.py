"""Draws bench/transfer.png from the JSON that ./bench/transfer writes: throughput of
each path, upload and download, one transfer at a time, on loopback (30 MiB) and on the
slow link (Toxiproxy), as horizontal bars with the min-max spread."""

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main(folder: str, out: str) -> None:
    panels = []
    for mode, title in [
        ("loopback", "loopback, 30 MiB, one transfer"),
        ("slow-link", "slow link (Toxiproxy), one transfer"),
    ]:
        path = Path(folder) / f"transfer-{mode}.json"
        if path.exists():
            data = json.loads(path.read_text())
            if mode == "slow-link":
                title = (
                    f"slow link: {data['latency_ms_each_way']} ms each way, "
                    f"{data['rate_kbps'] // 1000} MB/s, {data['size_mib']} MiB"
                )
            panels.append((title, [r for r in data["figures"] if r["parallel"] == 1]))
    if not panels:
        sys.exit(f"no transfer-*.json in {folder}")
    fig, axes = plt.subplots(1, len(panels), figsize=(7 * len(panels), 5), squeeze=False)
    for ax, (title, rows) in zip(axes[0], panels):
        paths = sorted({r["path"] for r in rows})
        height = 0.38
        for i, direction in enumerate(["upload", "download"]):
            ys, widths, errs = [], [], [[], []]
            for j, p in enumerate(paths):
                row = next(
                    (r for r in rows if r["path"] == p and r["direction"] == direction),
                    None,
                )
                if row is None:
                    continue
                ys.append(j + (i - 0.5) * height)
                widths.append(row["median_mbps"])
                errs[0].append(row["median_mbps"] - row["min_mbps"])
                errs[1].append(row["max_mbps"] - row["median_mbps"])
            ax.barh(ys, widths, height, xerr=errs, label=direction, capsize=2)
        ax.set_yticks(range(len(paths)))
        ax.set_yticklabels(paths, fontsize=8)
        ax.set_xlabel("MB/s (median, whiskers min-max)")
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=8)
        ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    print(f"chart written to {out}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
