package activities

import (
	"os"
	"syscall"
	"time"

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
//
// Without a cgroup the members are read off the host's shared scan of
// /proc (procIndex), one begun after the call: a stop never judges a tree
// by a scan older than its own signal.
func treeMembers(p ProcessInfo, groupOurs bool) ([]procStat, error) {
	members, _, err := membersSince(p, groupOurs, time.Now())
	return members, err
}

// membersSince is treeMembers from a scan begun no earlier than notBefore,
// and when that scan began (now, for a cgroup): a sample takes one up to a
// second old but newer than its previous, so that one scan serves every
// worker of the host.
func membersSince(p ProcessInfo, groupOurs bool, notBefore time.Time) ([]procStat, time.Time, error) {
	if p.Cgroup != "" {
		now := time.Now()
		members, err := cgroupMembers(p.Cgroup)
		return members, now, err
	}
	snap, err := hostProcs.snapshot(notBefore)
	if err != nil {
		return nil, time.Time{}, err
	}
	return snap.members(p, groupOurs), snap.at, nil
}

// members is treeMembers in one scan.
func (snap *procSnapshot) members(p ProcessInfo, groupOurs bool) []procStat {
	procs := snap.procs
	carriers := map[int]bool{}
	if p.Token != "" {
		for _, i := range snap.tokens[p.Token] {
			carriers[procs[i].PID] = true
		}
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
		case carriers[st.PID]:
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
	return members
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
