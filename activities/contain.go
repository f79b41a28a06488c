package activities

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/commit-relay/worker-lifecycle/internal/cgroup"
	"github.com/commit-relay/worker-lifecycle/internal/monitor"
	"github.com/commit-relay/worker-lifecycle/internal/procfs"
)

// Containment modes, as status and doctor name them.
const (
	// ContainmentCgroup: the worker's processes are its cgroup's members.
	ContainmentCgroup = "cgroup"
	// ContainmentProcessGroup: its process group, the processes carrying
	// its token and their descendants (a process that clears its
	// environment and leaves group and session escapes it).
	ContainmentProcessGroup = "process-group"
)

// monitorReportWait bounds how long a monitor takes to say its command
// started; it only forks and execs, so seconds mean it is stuck.
const monitorReportWait = 10 * time.Second

// exitFileWait bounds the wait, after a monitored process is gone, for its
// monitor to write how it ended: a monitor still running writes it within
// milliseconds of reaping.
const exitFileWait = 5 * time.Second

// MonitorProcess is the monitor a worker's process runs under.
type MonitorProcess struct {
	PID        int    `json:"pid"`
	StartTicks uint64 `json:"start_ticks"`
	// ExitFile is where the monitor writes how the process ended.
	ExitFile string `json:"exit_file"`
}

// Containment says how the worker's processes are found and stopped.
func (p ProcessInfo) Containment() string {
	if p.Cgroup != "" {
		return ContainmentCgroup
	}
	return ContainmentProcessGroup
}

// startedProcess is a process just started, and how to wait for its end
// or undo its start.
type startedProcess struct {
	pid   int
	ticks uint64
	// wait returns how the process ended; called once, by the table.
	wait func() ExitStatus
	// abort kills what was started and waits for it.
	abort func()
}

// startDirect starts the command as this program's own child, the leader
// of a new process group (in the worker's cgroup when it has one).
func startDirect(info ProcessInfo, argv, env []string, logFile *os.File) (startedProcess, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = env
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	// Its own group lets StopProcess reach every descendant with one kill,
	// and keeps signals aimed at the worker program's group off it.
	attr := &syscall.SysProcAttr{Setpgid: true}
	if info.Cgroup != "" {
		dir, err := os.Open(info.Cgroup)
		if err != nil {
			return startedProcess{}, fmt.Errorf("open cgroup %s: %w", info.Cgroup, err)
		}
		defer dir.Close()
		attr.UseCgroupFD, attr.CgroupFD = true, int(dir.Fd())
	}
	cmd.SysProcAttr = attr
	if err := cmd.Start(); err != nil {
		_ = cgroup.Remove(info.Cgroup)
		return startedProcess{}, spawnError(argv[0], err)
	}
	pid := cmd.Process.Pid
	abort := func() {
		p := info
		p.PID, p.PGID = pid, pid
		p.StartTicks, _ = processStartTicks(pid)
		killTree(p)
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		_ = cmd.Wait()
		_ = cgroup.Remove(info.Cgroup)
	}
	// The child is not reaped until cmd.Wait, so its /proc entry is there
	// even if it has exited already.
	ticks, err := processStartTicks(pid)
	if err != nil {
		// Without its start ticks it could never be told from a later
		// process with the same PID, so it must not run unmanaged.
		abort()
		return startedProcess{}, fmt.Errorf("read start time of pid %d: %w", pid, err)
	}
	wait := func() ExitStatus {
		// A non-nil error only repeats what ProcessState says: the output
		// goes straight to a file, so there is nothing to copy.
		_ = cmd.Wait()
		st := exitStatusOf(cmd.ProcessState)
		st.OOM = monitor.KilledByOOM(st.ExitCode, st.Signal, []string{info.Cgroup})
		// A stop that emptied the cgroup before the reap could not remove
		// it: a process not yet reaped still holds it.
		_ = cgroup.Remove(info.Cgroup)
		return st
	}
	return startedProcess{pid: pid, ticks: ticks, wait: wait, abort: abort}, nil
}

// startMonitored starts a monitor in a session of its own, which starts
// the command and outlives this program; info gets the monitor's record.
//
// The worker's own entries (env) and its token reach the command through
// the monitor's arguments, not its environment: whatever finds a worker's
// processes by them (the token walk, an operator's search for WORKER_ID)
// finds the command's tree and never the monitor.
func (a *HostActivities) startMonitored(workerID string, info *ProcessInfo, argv, env []string, logFile *os.File) (startedProcess, error) {
	exitFile := a.exitFilePath(workerID, info.Token)
	opts := monitor.Options{ExitFile: exitFile, Cgroup: info.Cgroup, Setenv: append(env, tokenEnv+"="+info.Token),
		Join: info.LimitCgroups, Argv: argv}
	r, w, err := os.Pipe()
	if err != nil {
		return startedProcess{}, fmt.Errorf("monitor of %s: %w", workerID, err)
	}
	keep := false
	defer func() {
		if !keep {
			r.Close()
		}
	}()
	cmd := exec.Command(a.Monitor[0], append(append(append([]string{}, a.Monitor[1:]...), monitor.Command), opts.Args()...)...)
	cmd.Env = opts.Env(os.Environ())
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.ExtraFiles = []*os.File{w}
	// A session of its own: signals aimed at this program's group or
	// session, and a terminal hanging up, leave it running.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err = cmd.Start()
	w.Close()
	// Kept until the monitor is reaped, once per live process: what only
	// the start needed (its environment, a copy of this program's) goes.
	cmd.Env = nil
	if err != nil {
		removeCgroups(*info)
		return startedProcess{}, fmt.Errorf("start the monitor %q of %s: %w", a.Monitor[0], workerID, err)
	}
	mon := cmd.Process.Pid
	monTicks, err := processStartTicks(mon)
	if err != nil {
		// Dead at once: its report says why, or it says nothing.
		monTicks = 0
	}
	info.Monitor = &MonitorProcess{PID: mon, StartTicks: monTicks, ExitFile: exitFile}

	_ = r.SetReadDeadline(time.Now().Add(monitorReportWait))
	var rep monitor.Started
	// Kept for the process's life, for the second line: sized for the
	// monitor's two short lines, not bufio's 4 KiB (a longer line is read
	// all the same).
	lines := bufio.NewReaderSize(r, monitorLineBuffer)
	line, readErr := lines.ReadBytes('\n')
	if readErr == nil {
		readErr = json.Unmarshal(line, &rep)
	}
	switch {
	case readErr != nil || (rep.Error == "" && rep.PID <= 0):
		// A monitor that says nothing useful is stuck or broken: whatever
		// it started goes with it.
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		a.killByToken(info.Token)
		removeCgroups(*info)
		return startedProcess{}, fmt.Errorf("the monitor of %s did not report its start: %v", workerID, errText(readErr, "no PID"))
	case rep.Error != "":
		_ = cmd.Wait()
		removeCgroups(*info)
		if rep.Permanent {
			return startedProcess{}, spawnFailed(rep.Error)
		}
		return startedProcess{}, errors.New(rep.Error)
	}
	pid := rep.PID
	abort := func() {
		// The whole tree: the monitor, a subreaper, lingers while any
		// orphan of the command lives.
		p := *info
		p.PID, p.PGID, p.StartTicks = pid, pid, rep.StartTicks
		killTree(p)
		r.Close()
		go func() {
			_ = cmd.Wait()
			_ = os.Remove(exitFile)
			removeCgroups(p)
		}()
	}
	p := *info
	p.PID, p.StartTicks = pid, rep.StartTicks
	// The monitor's second line is the end of the process. It may linger
	// after it, reaping orphaned descendants until a stop ends them, so
	// the end is not waited for through the monitor's exit.
	keep = true
	_ = r.SetReadDeadline(time.Time{})
	wait := func() ExitStatus {
		defer r.Close()
		var e monitor.Exit
		line, err := lines.ReadBytes('\n')
		if err == nil && json.Unmarshal(line, &e) == nil {
			if st, ok := endOf(p, e); ok {
				go func() { _ = cmd.Wait() }()
				return st
			}
		}
		// The monitor is gone without a word: killed, or its pipe broken.
		_ = cmd.Wait()
		return endOfMonitored(p)
	}
	return startedProcess{pid: pid, ticks: rep.StartTicks, wait: wait, abort: abort}, nil
}

// monitorLineBuffer is the buffer of a monitor's pipe: its lines (Started,
// Exit) are a few dozen bytes of JSON.
const monitorLineBuffer = 256

// exitFilePath is where the monitor of one start writes its end: named by
// the start's token, so an exit file is never taken for a later start's.
func (a *HostActivities) exitFilePath(workerID, token string) string {
	return filepath.Join(a.StateDir, fmt.Sprintf("%s.%s.exit.json", workerID, tokenTag(token)))
}

// ProcessEnv names the environment entry that gives a worker process its
// start's public name (ProcessTag): an agent puts it in its heartbeats, so
// that one from an earlier process of the same worker is told apart.
const ProcessEnv = "WORKER_PROCESS"

// ProcessTag is the public name of the start whose token is token.
func ProcessTag(token string) string { return tokenTag(token) }

// tokenTag names a start in file and cgroup names, which any user can
// read, without giving its token away: whoever knew the token could have
// a process of their own taken for the worker's.
func tokenTag(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:8])
}

// findMonitor returns the live monitor started for token, if any: it
// carries the token for its command under monitor.SetenvPrefix.
func findMonitor(token string) (*procStat, error) {
	snap, err := hostProcs.fresh()
	if err != nil {
		return nil, err
	}
	procs := snap.procs
	entry := "=" + tokenEnv + "=" + token
	for i, st := range procs {
		if st.exited() || !strings.Contains(procfs.Cmdline(st.PID), " "+monitor.Command+" ") {
			continue
		}
		env, _ := procfs.Environ(st.PID)
		for _, e := range env {
			if strings.HasPrefix(e, monitor.SetenvPrefix) && strings.HasSuffix(e, entry) {
				return &procs[i], nil
			}
		}
	}
	return nil, nil
}

func errText(err error, otherwise string) string {
	if err != nil {
		return err.Error()
	}
	return otherwise
}

// endOfMonitored is how a monitored process ended, once its monitor has
// exited: what the monitor wrote, or, when the monitor was killed while the
// process runs on, what is known once the process is gone (polled through
// /proc as a process this program did not start).
func endOfMonitored(p ProcessInfo) ExitStatus {
	for {
		if st, ok := readExitFile(p); ok {
			return st
		}
		if running, err := sameProcessRunning(p.PID, p.StartTicks); err == nil && !running {
			return endAfterGone(p)
		}
		time.Sleep(time.Second)
	}
}

// endAfterGone is how a process that is gone ended: what its monitor wrote
// (a monitor still running writes it within milliseconds of reaping), or
// Lost when it had no monitor or its monitor did not live to write it.
func endAfterGone(p ProcessInfo) ExitStatus {
	if p.Monitor == nil {
		return ExitStatus{ExitCode: -1, Lost: true}
	}
	deadline := time.Now().Add(exitFileWait)
	for time.Now().Before(deadline) {
		if st, ok := readExitFile(p); ok {
			return st
		}
		if running, _ := sameProcessRunning(p.Monitor.PID, p.Monitor.StartTicks); !running {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if st, ok := readExitFile(p); ok {
		return st
	}
	return ExitStatus{ExitCode: -1, Lost: true}
}

// readExitFile reads the end the monitor of p wrote, if it wrote one for
// this very process.
func readExitFile(p ProcessInfo) (ExitStatus, bool) {
	if p.Monitor == nil {
		return ExitStatus{}, false
	}
	e, err := monitor.ReadExit(p.Monitor.ExitFile)
	if err != nil {
		return ExitStatus{}, false
	}
	return endOf(p, e)
}

// endOf is what a monitor said of the end of p, if it speaks of p itself.
func endOf(p ProcessInfo, e monitor.Exit) (ExitStatus, bool) {
	if e.PID != p.PID || e.StartTicks != p.StartTicks {
		return ExitStatus{}, false
	}
	return ExitStatus{ExitCode: e.ExitCode, Signal: e.Signal, OOM: e.OOM}, true
}

// killByToken kills every process carrying token: the fragments of a
// start that could not be completed.
func (a *HostActivities) killByToken(token string) {
	members, err := treeMembers(ProcessInfo{Token: token}, false)
	if err != nil {
		return
	}
	for _, m := range members {
		_ = signalProcess(m.PID, m.StartTicks, syscall.SIGKILL)
	}
}

// killTree sends SIGKILL to every process of a start that is being undone:
// its cgroup, or its group, token and monitor's children.
//
// Without a cgroup it kills on every scan until none is left (or killWait
// passes): a member may fork between a scan and its kill.
func killTree(p ProcessInfo) {
	kill := func(members []procStat) { _ = signalTree(p, true, members, syscall.SIGKILL) }
	_, _ = waitTreeEmpty(context.Background(), p, true, killWait, func() {}, kill)
}

// removeCgroups removes the cgroups of a start that did not happen, at once.
func removeCgroups(p ProcessInfo) { removeContainment(p, 0) }

// removeContainment removes p's cgroups, waiting up to within for each to
// lose its last members to their reaper.
func removeContainment(p ProcessInfo, within time.Duration) {
	for _, cg := range append([]string{p.Cgroup}, p.LimitCgroups...) {
		_ = cgroup.RemoveWhenEmptied(cg, within)
	}
}

// cgroupMembers lists the live members of a worker's cgroup; a cgroup that
// is gone has none.
func cgroupMembers(dir string) ([]procStat, error) {
	pids, err := cgroup.Procs(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	members := make([]procStat, 0, len(pids))
	for _, pid := range pids {
		st, err := readProcStat(pid)
		if err != nil || st.exited() {
			continue // ended since the read
		}
		members = append(members, st)
	}
	return members, nil
}
