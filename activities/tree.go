package activities

import (
	"os"
	"syscall"

	"github.com/commit-relay/worker-lifecycle/internal/cgroup"
)

// tokenEnv names the environment entry that marks every process of a
// worker. Descendants inherit it whatever they do with their process group
// or session, which a process group alone cannot follow.
const tokenEnv = "WORKER_LIFECYCLE_TOKEN"

// treeMembers lists the live processes of the worker p started: its process group
// when groupOurs (the group is provably this worker's), every process that
// carries its token, every child of its monitor (a subreaper, so that is
// where a daemonized descendant ends up), and every descendant of those.
// The worker program, the monitor and init are never part of it.
//
// A worker with a cgroup is its cgroup's members, and nothing else: the
// kernel keeps that list whatever a member does to its environment, group
// or session, and reading it costs nothing like a scan of /proc.
func treeMembers(p ProcessInfo, groupOurs bool) ([]procStat, error) {
	if p.Cgroup != "" {
		return cgroupMembers(p.Cgroup)
	}
	procs, err := allProcs()
	if err != nil {
		return nil, err
	}
	self := os.Getpid()
	// The monitor is a subreaper: a descendant that daemonized is its
	// child, not init's. Its children are the worker's, the monitor itself
	// is not (its PID is trusted only while it is the monitor started).
	monitor := 0
	if p.Monitor != nil {
		for _, st := range procs {
			if st.PID == p.Monitor.PID && st.StartTicks == p.Monitor.StartTicks && !st.exited() {
				monitor = st.PID
			}
		}
	}
	children := map[int][]procStat{}
	var roots []procStat
	tokenEntry := tokenEnv + "=" + p.Token
	for _, st := range procs {
		if st.PID == self || st.PID == 1 {
			continue
		}
		children[st.PPID] = append(children[st.PPID], st)
		switch {
		case groupOurs && st.PGRP == p.PGID:
			roots = append(roots, st)
		case monitor != 0 && st.PPID == monitor:
			roots = append(roots, st)
		case p.Token != "" && hasEnvEntry(st.PID, tokenEntry):
			roots = append(roots, st)
		}
	}
	seen := map[int]bool{}
	var members []procStat
	for len(roots) > 0 {
		st := roots[len(roots)-1]
		roots = roots[:len(roots)-1]
		if seen[st.PID] {
			continue
		}
		seen[st.PID] = true
		if !st.exited() {
			members = append(members, st)
		}
		roots = append(roots, children[st.PID]...)
	}
	return members, nil
}

// signalTree sends sig to the group (when it is ours) and to every member,
// so that a member outside the group is reached too.
func signalTree(p ProcessInfo, groupOurs bool, members []procStat, sig syscall.Signal) error {
	if p.Cgroup != "" && sig == syscall.SIGKILL {
		// One write that a member forking meanwhile cannot outrun.
		return cgroup.Kill(p.Cgroup)
	}
	if groupOurs && p.Cgroup == "" {
		if err := signalGroup(p.PGID, sig); err != nil {
			return err
		}
	}
	for _, m := range members {
		// A member that exited meanwhile, or whose PID was recycled since
		// the scan, is left alone (signalProcess).
		_ = signalProcess(m.PID, m.StartTicks, sig)
	}
	return nil
}
