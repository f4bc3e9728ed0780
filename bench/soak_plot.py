"""Draws the samples of a soak run (bench/soak): soak_plot.py SOAK.csv OUT.png"""

import csv
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main() -> None:
    source, target = sys.argv[1], sys.argv[2]
    with open(source, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        sys.exit(f"{source} has no samples")
    t = [float(r["t_s"]) / 60 for r in rows]

    def col(name: str) -> list[float]:
        return [float(r[name]) for r in rows]

    panels = [
        ("server RSS (MiB)", [("rss_mib", "RSS")]),
        ("open file descriptors", [("fds", "fds")]),
        ("tasks and threads", [("tasks", "Tokio tasks alive"), ("threads", "threads"),
                               ("subscribers", "Subscribe streams")]),
        ("p99 send→receive (ms, per second)", [("p99_ms", "p99")]),
        ("transfer throughput (MiB/s, up + down)", [("transfer_mib_s", "MiB/s")]),
        ("messages (cumulative)", [("peer_sent", "peer sent"), ("channel_sent", "channel sent"),
                                   ("received", "events received"), ("reconnects", "reconnects")]),
    ]
    fig, axes = plt.subplots(len(panels), 1, figsize=(10, 2.4 * len(panels)), sharex=True)
    for ax, (title, series) in zip(axes, panels):
        for name, label in series:
            ax.plot(t, col(name), linewidth=0.9, label=label)
        ax.set_title(title, fontsize=10, loc="left")
        ax.grid(True, alpha=0.3)
        ax.set_ylim(bottom=0)
        if len(series) > 1:
            ax.legend(fontsize=8, loc="upper left")
    axes[-1].set_xlabel("minutes")
    fig.suptitle("courier soak run", fontsize=12)
    fig.tight_layout()
    fig.savefig(target, dpi=90)


if __name__ == "__main__":
    main()
