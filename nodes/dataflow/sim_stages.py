"""Planning one run of each of the six scripts, as the scripts print it.

`StagePlanner` is mixed into `Simulator`: each `_run_<script>` appends the
timed actions of one run (summary-log lines, file moves, flags) for one radar
and returns (end time, finished). The printed lines follow the scripts of
SuperDARN Canada's data_flow repository, their quirks included (an empty path
after "DMAP integrity test failed", "Resizing file" naming the last IQ file).
"""

from __future__ import annotations

import os
import random

from nodes.dataflow.sim_model import (
    DAY,
    LOW_BANDWIDTH,
    RADAR_SPACING,
    SEPARATOR,
    STAGE_TIME,
    Action,
    SimFile,
    dmap_name,
    name_time,
    utc_line,
)


class StagePlanner:
    """The six scripts' runs. The state (queues, rng, clock scale) and the small
    helpers `_act`, `_note`, `_injected`, `_chance`, `_log_path`, `_hex` are `Simulator`'s."""

    rng: random.Random
    scale: float
    failure_rate: float
    data_dir: str
    antennas: int
    keep_files: int
    queues: dict[str, dict[str, list[SimFile]]]
    final: dict

    commit: dict[str, tuple[str, str]]

    # ---- one run -----------------------------------------------------------------

    def _header(
        self,
        acts: list[Action],
        stage: str,
        radar: str,
        t: float,
        script: str,
        host: str,
        repos: tuple[str, ...],
    ) -> str:
        path = self._log_path(stage, t)
        self._act(acts, t, "line", path, SEPARATOR + "\n\n")
        self._act(acts, t, "line", path, f"Executing {script} on {host} for {radar}\n")
        self._act(acts, t, "line", path, utc_line(t) + "\n")
        for repo in repos:
            commit, date = self.commit[repo]
            self._act(
                acts, t, "line", path, f"{repo}: On branch main, last commit: \t\t{commit} {date}\n"
            )
        return path

    def _finish(self, acts: list[Action], path: str, stage: str, t: float) -> None:
        self._act(acts, t, "line", path, f"\nFinished {stage}. End time: {utc_line(t)}\n\n")

    def _times(self, stage: str, t: float, n: int) -> tuple[list[float], float]:
        """Times of n file lines and of the end of a run starting at t."""
        fixed, per = STAGE_TIME[stage]
        per = min(per * self.rng.uniform(0.6, 1.4), (RADAR_SPACING * 0.8 - fixed) / max(n, 1))
        step = per * self.scale
        head = fixed * 0.5 * self.scale
        times = [t + head + step * (i + 1) for i in range(n)]
        end = (times[-1] if times else t + head) + fixed * 0.5 * self.scale
        return times, end

    def _die_maybe(self, stage: str, radar: str, t: float, times: list[float]) -> int | None:
        """If this run dies, how many of its file lines get written first."""
        if self._chance("died", stage, radar, 0.1):
            self._note(t, radar, stage, "died")
            return self.rng.randrange(0, max(1, len(times)))
        return None

    def _unknown_maybe(
        self, acts: list[Action], path: str, stage: str, radar: str, t: float
    ) -> None:
        if self._injected("unknown", stage, radar) or self.rng.random() < self.failure_rate / 10:
            self._act(
                acts,
                t,
                "line",
                path,
                "rsync warning: some files vanished before they could be transferred (code 24)\n",
            )
            self._note(t, radar, stage, "unknown")

    def _run_rsync_to_nas(self, acts: list[Action], radar: str, t: float) -> tuple[float, bool]:
        stage = "rsync_to_nas"
        q = self.queues[radar]
        files = list(q[stage])
        path = self._header(
            acts,
            stage,
            radar,
            t,
            "/home/radar/data_flow/borealis/rsync_to_nas",
            f"{radar}main207",
            ("data_flow",),
        )
        self._act(acts, t, "line", path, "Transferring from: /data/borealis_data/\n")
        self._act(acts, t, "line", path, "Transferring to NAS: /borealis_nfs/borealis_data\n\n")
        if not files:
            self._act(acts, t, "line", path, "No files to be transferred.\n")
        times, end = self._times(stage, t, len(files))
        dies = self._die_maybe(stage, radar, t, times)
        fail = self._pick_failure(files, "transfer", stage, radar, t)
        self._unknown_maybe(acts, path, stage, radar, t)
        nas = os.path.join(self.data_dir, radar, "nas")
        for i, (f, ft) in enumerate(zip(files, times, strict=True)):
            if dies is not None and i >= dies:
                return ft, False
            day = f.name[:8]
            shown = f"/data/borealis_data/{day}/{f.name}"
            if f is fail:
                self._act(acts, ft, "line", path, f"Transfer failed: {shown}\n")
                continue
            self._act(acts, ft, "line", path, f"Successfully transferred: {shown}\n")
            q[stage].remove(f)
            sub = "antennas_iq_array" if ".antennas_iq." in f.name else "rawacf_array"
            self._move(acts, ft, f, os.path.join(nas, sub, f.name))
            if sub == "rawacf_array":
                q["rsync_to_campus"].append(f)
                if radar not in LOW_BANDWIDTH:
                    # the site converts to DMAP too (convert_and_restructure, not simulated as a stage)
                    dmap = SimFile(
                        dmap_name(f.name),
                        radar,
                        f.size // 3,
                        os.path.join(nas, "rawacf_dmap", dmap_name(f.name)),
                    )
                    self._act(acts, ft, "create", dmap.path, size=dmap.size)
                    q["rsync_to_campus"].append(dmap)
            else:
                q["plot_antennas_iq"].append(f)
        if dies is not None:
            return end, False
        self._finish(acts, path, stage, end)
        self._flag(acts, end, f".borealis_flag_{radar}")
        return end, True

    def _run_plot_antennas_iq(self, acts: list[Action], radar: str, t: float) -> tuple[float, bool]:
        stage = "plot_antennas_iq"
        q = self.queues[radar]
        files, q[stage] = list(q[stage]), []  # it plots the last two hours, whatever happens
        path = self._header(
            acts,
            stage,
            radar,
            t,
            "/home/transfer/data_flow/site-linux/plot_antennas_iq",
            f"{radar}dist205",
            ("data_flow",),
        )
        self._act(acts, t, "line", path, "IQ plot directory: /home/transfer/logs/daily_plots/\n\n")
        if not files:
            self._act(acts, t, "line", path, "No antenna iq files found to plot.\n")
        times, end = self._times(stage, t, len(files))
        dies = self._die_maybe(stage, radar, t, times)
        fail = self._pick_failure(files, "plot", stage, radar, t)
        plots_dir = os.path.join(self.data_dir, "campus", "antennas_iq_plots", f"{radar}_iq_plots")
        made: list[SimFile] = []
        last_shown = ""
        for i, (f, ft) in enumerate(zip(files, times, strict=True)):
            if dies is not None and i >= dies:
                return ft, False
            last_shown = f"/borealis_nfs/borealis_data/antennas_iq_array/{f.name}"
            if f is fail:
                self._act(
                    acts, ft, "line", path, f"Failed to generate iq plot from: {last_shown}\n"
                )
            else:
                self._act(acts, ft, "line", path, f"Successfully converted: {last_shown}\n")
                stem = ".".join(f.name.split(".")[:6])
                for a in range(self.antennas):
                    name = f"{stem}.antenna_{a}_0_70.jpg"
                    made.append(SimFile(name, radar, 180_000, os.path.join(plots_dir, name)))
            self._act(acts, ft, "delete", f.path)
        if dies is not None:
            return end, False
        for p in made:
            # the script's own bug: it names the last IQ file, not the image
            self._act(acts, end, "line", path, f"Resizing file: {last_shown}\n")
            self._act(acts, end, "create", p.path, size=p.size)
        q["archive_iq_plots"].extend(made)
        self._finish(acts, path, stage, end)
        return end, True

    def _run_rsync_to_campus(self, acts: list[Action], radar: str, t: float) -> tuple[float, bool]:
        stage = "rsync_to_campus"
        q = self.queues[radar]
        low = radar in LOW_BANDWIDTH
        dest = f"/sddata/{radar}_holding_dir" if low else f"/sddata/{radar}_data/"
        path = self._header(
            acts,
            stage,
            radar,
            t,
            "/home/transfer/data_flow/site-linux/rsync_to_campus",
            f"{radar}dist205",
            ("data_flow", "pyDARNio"),
        )
        self._act(acts, t, "line", path, "Transferring from: /borealis_nfs/borealis_data\n")
        self._act(acts, t, "line", path, f"Transferring to: dataman@sdc-serv.usask.ca:{dest}\n\n")
        dmaps = [f for f in q[stage] if f.name.endswith(".bz2")]
        arrays = [f for f in q[stage] if not f.name.endswith(".bz2")]
        files = ([] if low else dmaps) + arrays
        times, end = self._times(stage, t, len(files))
        dies = self._die_maybe(stage, radar, t, times)
        down = self._chance("connection", stage, radar, 0.2)
        fail = None if down else self._pick_failure(files, "transfer", stage, radar, t)
        if low:
            self._act(acts, t, "line", path, "Not transferring any dmap files\n")
        elif not dmaps:
            self._act(acts, t, "line", path, "No dmap files found to be transferred.\n")
        if not arrays:
            self._act(acts, t, "line", path, "\nNo array files found to be transferred.\n")
        if down and files:
            self._act(
                acts,
                t,
                "line",
                path,
                "ssh: connect to host sdc-serv.usask.ca port 22: Connection timed out\n",
            )
            self._note(t, radar, stage, "connection")
        campus = os.path.join(
            self.data_dir, "campus", f"{radar}_holding_dir" if low else f"{radar}_data"
        )
        for i, (f, ft) in enumerate(zip(files, times, strict=True)):
            if dies is not None and i >= dies:
                return ft, False
            sub = "rawacf_dmap" if f.name.endswith(".bz2") else "rawacf_array"
            shown = f"/borealis_nfs/borealis_data/{sub}/{f.name}"
            if down or f is fail:
                self._act(acts, ft, "line", path, f"Transfer failed: {shown}\n")
                continue
            self._act(acts, ft, "line", path, f"Successfully transferred: {shown}\n")
            q[stage].remove(f)
            self._copy(acts, ft, f, os.path.join(campus, f.name))
            q["convert_on_campus" if low else "distribute_borealis_data"].append(f)
        if dies is not None:
            return end, False
        self._finish(acts, path, stage, end)
        self._act(acts, end, "clear", f".borealis_flag_{radar}")
        self._flag(acts, end, f".site-linux_flag_{radar}")
        return end, True

    def _run_convert_on_campus(
        self, acts: list[Action], radar: str, t: float
    ) -> tuple[float, bool]:
        stage = "convert_on_campus"
        q = self.queues[radar]
        low = radar in LOW_BANDWIDTH
        path = self._header(
            acts,
            stage,
            radar,
            t,
            "/home/dataman/data_flow/campus/convert_on_campus",
            "sdc-serv",
            ("data_flow", "pyDARNio") if low else (),
        )
        files = list(q[stage]) if low else []
        times, end = self._times(stage, t, len(files))
        if not low:
            self._act(acts, t, "line", path, f"\nNot converting files for {radar}.\n")
            self._finish(acts, path, stage, end)
            return end, True
        if not files:
            self._act(acts, t, "line", path, "No files to be converted.\n")
        dies = self._die_maybe(stage, radar, t, times)
        fail = self._pick_failure(files, "convert", stage, radar, t)
        data = os.path.join(self.data_dir, "campus", f"{radar}_data")
        for i, (f, ft) in enumerate(zip(files, times, strict=True)):
            if dies is not None and i >= dies:
                return ft, False
            shown = f"/sddata/{radar}_holding_dir/{f.name}"
            q[stage].remove(f)
            if f is fail:
                self._act(acts, ft, "line", path, f"File failed to convert: {shown}\n")
                self._move(
                    acts, ft, f, os.path.join(self.data_dir, "campus", "conversion_failure", f.name)
                )
                continue
            dmap = SimFile(
                dmap_name(f.name), radar, f.size // 3, os.path.join(data, dmap_name(f.name))
            )
            self._act(acts, ft, "create", dmap.path, size=dmap.size)
            self._move(acts, ft, f, os.path.join(data, f.name))
            self._act(acts, ft, "line", path, f"Successfully converted: {shown}\n")
            q["distribute_borealis_data"] += [dmap, f]
        if dies is not None:
            return end, False
        self._finish(acts, path, stage, end)
        return end, True

    def _run_distribute_borealis_data(
        self, acts: list[Action], radar: str, t: float
    ) -> tuple[float, bool]:
        stage = "distribute_borealis_data"
        q = self.queues[radar]
        path = self._header(
            acts, stage, radar, t, "distribute_borealis_data", "sdc-serv", ("data_flow", "pyDARNio")
        )
        self._act(acts, t, "line", path, f"Distributing from: /sddata/{radar}_data\n")
        self._act(
            acts,
            t,
            "line",
            path,
            "Distributing to: \n        \tNAS: /data/borealis_site_data\n"
            "        \tMirror: /data/holding/globus\n"
            f"        \tInstitutions: /home/bas/outgoing/{radar}\t/home/vtsd/outgoing/{radar}\n\n",
        )
        dmaps = [f for f in q[stage] if f.name.endswith(".bz2")]
        arrays = [f for f in q[stage] if not f.name.endswith(".bz2")]
        files = dmaps + arrays
        times, end = self._times(stage, t, len(files))
        if not dmaps:
            self._act(acts, t, "line", path, "No dmap files found to be distributed.\n")
        dies = self._die_maybe(stage, radar, t, times)
        kind = self.rng.choice(("integrity", "bzip2", "distribute"))
        for k in ("integrity", "bzip2", "distribute"):
            if self._injected(k, stage, radar):
                kind = k
        fail = self._pick_failure(dmaps, kind, stage, radar, t)
        site = os.path.join(self.data_dir, "campus", "borealis_site_data")
        problems = os.path.join(self.data_dir, "campus", "conversion_failure")
        for i, (f, ft) in enumerate(zip(files, times, strict=True)):
            if dies is not None and i >= dies:
                return ft, False
            shown = f"/sddata/{radar}_data/{f.name}"
            if f is fail:
                if kind == "distribute":  # a copy failed: the file stays for the next run
                    self._act(acts, ft, "line", path, f"File distribution failed: {shown}\n")
                    continue
                q[stage].remove(f)
                if kind == "integrity":
                    # the script prints an unset variable here: the path is empty
                    self._act(acts, ft, "line", path, "DMAP integrity test failed: \n")
                else:
                    self._act(acts, ft, "line", path, f"DMAP file failed bzip2 test: {shown}\n")
                self._move(acts, ft, f, os.path.join(problems, f.name))
                continue
            q[stage].remove(f)
            self._act(acts, ft, "line", path, f"File distribution successful: {shown}\n")
            sub = f"{radar}_rawacf_dmap" if f.name.endswith(".bz2") else f"{radar}_rawacf"
            dest = os.path.join(site, sub, f.name[:4], f.name[4:6], f.name)
            self._move(acts, ft, f, dest)
            self._keep_bounded(acts, ft, radar, dest)
        if not arrays:
            self._act(acts, end, "line", path, "\nNo array files found to be distributed.\n")
        if dies is not None:
            return end, False
        self._finish(acts, path, stage, end)
        return end, True

    def _run_archive_iq_plots(self, acts: list[Action], radar: str, t: float) -> tuple[float, bool]:
        stage = "archive_iq_plots"
        q = self.queues[radar]
        shown_dir = f"/sddata/antennas_iq_plots/{radar}_iq_plots/"
        path = self._header(
            acts, stage, radar, t, "/home/dataman/data_flow/campus/archive_iq_plots", "sdc-serv", ()
        )
        self._act(acts, t, "line", path, f"Archiving from: {shown_dir}\n")
        self._act(acts, t, "line", path, f"Archiving to: {shown_dir}archive/\n\n")
        cutoff = t - DAY * self.scale  # plots over 24 hours (of simulated time) old
        old = [p for p in q[stage] if name_time(p.name) < cutoff]
        times, end = self._times(stage, t, len(old))
        if not old:
            self._act(acts, t, "line", path, "No plots to archive.\n")
        archive = os.path.join(
            self.data_dir, "campus", "antennas_iq_plots", f"{radar}_iq_plots", "archive"
        )
        for p, pt in zip(old, times, strict=True):
            q[stage].remove(p)
            self._act(acts, pt, "line", path, f"Successfully archived: {shown_dir}{p.name}\n")
            dest = os.path.join(archive, p.name[:4], p.name[4:6], p.name)
            self._move(acts, pt, p, dest)
            self._keep_bounded(acts, pt, radar, dest)
        self._finish(acts, path, stage, end)
        self._flag(acts, end, f".campus_dataflow_flag_{radar}")
        self._act(acts, end, "clear", f".site-linux_flag_{radar}")
        return end, True

    # ---- helpers -------------------------------------------------------------------

    def _pick_failure(
        self, files: list[SimFile], kind: str, stage: str, radar: str, t: float
    ) -> SimFile | None:
        if files and self._chance(kind, stage, radar):
            f = self.rng.choice(files)
            self._note(t, radar, stage, kind, f.name)
            return f
        return None

    def _move(self, acts: list[Action], t: float, f: SimFile, dest: str) -> None:
        self._act(acts, t, "move", f.path, dest)
        f.path = dest

    def _copy(self, acts: list[Action], t: float, f: SimFile, dest: str) -> None:
        self._act(acts, t, "copy", f.path, dest, size=f.size)
        f.path = dest

    def _flag(self, acts: list[Action], t: float, name: str) -> None:
        self._act(acts, t, "flag", name)

    def _keep_bounded(self, acts: list[Action], t: float, radar: str, path: str) -> None:
        kept = self.final[radar]
        kept.append(path)
        while len(kept) > self.keep_files:
            self._act(acts, t, "delete", kept.popleft())
