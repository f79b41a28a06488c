// Package monitor is the small parent every worker process runs under, as
// conmon and containerd-shim are for containers: the worker program starts
// its own binary in monitor mode, in a session of its own, and the monitor
// starts the worker's command, waits for it and writes how it ended into
// the host's state folder. The monitor outlives a crash or a deploy of the
// worker program, so a worker program that comes back reads the exact end
// of a process it no longer parents instead of reporting it lost.
//
// The worker program and the monitor speak over two channels: lines on
// file descriptor 3, one once the command has started (its PID and start
// time, or why it could not start) and one once it has ended, and the exit
// file, for a worker program that restarted meanwhile.
package monitor

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/commit-relay/worker-lifecycle/internal/atomicfile"
	"github.com/commit-relay/worker-lifecycle/internal/cgroup"
	"github.com/commit-relay/worker-lifecycle/internal/procfs"
)

// Command is the worker program's argument that runs it as a monitor.
const Command = "monitor"

// Options are what the worker program tells a monitor.
type Options struct {
	// ExitFile is where the end of the command is written, atomically.
	ExitFile string
	// Cgroup is a cgroup v2 folder the command is started in (clone3's
	// CLONE_INTO_CGROUP, so not even its first fork escapes); empty for
	// none. The monitor itself stays outside, so that killing the cgroup
	// never kills the one process that can tell how the command ended.
	Cgroup string
	// Setenv are NAME=VALUE entries the command gets on top of the
	// monitor's environment. They reach the monitor in its environment
	// (Env), each under SetenvPrefix: not in its command line, which any
	// user can read, nor under their own names, so that a search of /proc
	// for them finds the command's tree and not its monitor.
	Setenv []string
	// Join are v1 cgroups (a hybrid host's memory, pids and cpu
	// controllers) the command joins before it runs: it is started held,
	// moved into them, and only then let go to exec the command.
	Join []string
	// Argv is the command.
	Argv []string
}

// Args are the arguments that follow Command.
func (o Options) Args() []string {
	args := []string{"--exit-file", o.ExitFile}
	if o.Cgroup != "" {
		args = append(args, "--cgroup", o.Cgroup)
	}
	for _, j := range o.Join {
		args = append(args, "--join", j)
	}
	return append(append(args, "--"), o.Argv...)
}

// SetenvPrefix marks, in a monitor's environment, an entry for its
// command: SetenvPrefix + "3=WORKER_ID=worker-x-1".
const SetenvPrefix = "WORKER_LIFECYCLE_MONITOR_SETENV_"

// Env is the monitor's environment: base, and Setenv under SetenvPrefix.
func (o Options) Env(base []string) []string {
	env := append([]string{}, base...)
	for i, e := range o.Setenv {
		env = append(env, SetenvPrefix+strconv.Itoa(i)+"="+e)
	}
	return env
}

// commandEnv splits the monitor's environment into the command's: the
// entries under SetenvPrefix unwrapped and added, the rest kept.
func commandEnv(env []string) []string {
	var out, extra []string
	for _, e := range env {
		if rest, ok := strings.CutPrefix(e, SetenvPrefix); ok {
			if _, entry, ok := strings.Cut(rest, "="); ok {
				extra = append(extra, entry)
			}
			continue
		}
		out = append(out, e)
	}
	return append(out, extra...)
}

// Started is the line the monitor writes on descriptor 3: the command's
// PID and start ticks, or why it could not be started.
type Started struct {
	PID        int    `json:"pid,omitempty"`
	StartTicks uint64 `json:"start_ticks,omitempty"`
	Error      string `json:"error,omitempty"`
	// Permanent says that starting again cannot help (no such program,
	// not executable).
	Permanent bool `json:"permanent,omitempty"`
}

// Exit is how the command ended, as its monitor saw it.
type Exit struct {
	PID        int    `json:"pid"`
	StartTicks uint64 `json:"start_ticks"`
	// ExitCode is the command's exit code, or 128+N for a death by signal N.
	ExitCode int    `json:"exit_code"`
	Signal   string `json:"signal,omitempty"`
	// OOM is true when the kernel's out-of-memory killer ended it.
	OOM     bool      `json:"oom,omitempty"`
	EndedAt time.Time `json:"ended_at"`
}

// ReadExit reads an exit file. A file that does not exist yields an error
// for which errors.Is(err, fs.ErrNotExist) holds.
func ReadExit(path string) (Exit, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Exit{}, err
	}
	var e Exit
	if err := json.Unmarshal(data, &e); err != nil {
		return Exit{}, fmt.Errorf("exit file %s: %w", path, err)
	}
	return e, nil
}

// Main runs a monitor with the arguments after Command and returns its
// exit code: 0 once the command's end is written, 2 when it could not be
// started, 1 when its end could not be written.
func Main(args []string) int {
	fset := flag.NewFlagSet(Command, flag.ContinueOnError)
	var o Options
	fset.StringVar(&o.ExitFile, "exit-file", "", "where the command's end is written")
	fset.StringVar(&o.Cgroup, "cgroup", "", "cgroup v2 folder the command starts in")
	fset.Func("join", "v1 cgroup the command joins before it runs", func(s string) error {
		o.Join = append(o.Join, s)
		return nil
	})
	hold := fset.Bool("hold", false, "wait for a byte on descriptor 3, then exec the command (the monitor's own held child)")
	if err := fset.Parse(args); err != nil {
		return 2
	}
	o.Argv = fset.Args()
	if *hold {
		return execWhenReleased(o.Argv)
	}
	report := os.NewFile(3, "monitor-report")
	// Inherited without close-on-exec; the command must not get it: a
	// descendant holding it would keep the worker program from seeing the
	// pipe close when the monitor dies, and could write to it.
	unix.CloseOnExec(3)
	if o.ExitFile == "" || len(o.Argv) == 0 {
		writeLine(report, Started{Error: "monitor: --exit-file and a command are required", Permanent: true})
		return 2
	}
	// The monitor's life is bound to its command's. A signal meant for a
	// group or session it was once in, or a stray pkill, must not take
	// it: the status would be lost. Handled rather than ignored, so the
	// command does not inherit an ignored disposition across exec.
	signal.Notify(make(chan os.Signal, 1), syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGPIPE)
	// A subreaper, as containerd-shim is: a descendant that daemonizes
	// (double fork, setsid) is orphaned to the monitor, not to init. It
	// stays in the worker's process tree, where a stop finds it even
	// without a cgroup, and it is reaped at once when killed, so the
	// worker's cgroup can be removed.
	_ = unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)

	cmd, err := start(o)
	if err != nil {
		writeLine(report, Started{Error: err.Error(), Permanent: permanent(err)})
		return 2
	}
	pid := cmd.Process.Pid
	// Not reaped yet: the /proc entry is there even if it exited.
	st, err := procfs.ReadStat(pid)
	if err != nil {
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		_ = cmd.Wait()
		writeLine(report, Started{Error: fmt.Sprintf("read start time of pid %d: %v", pid, err)})
		return 2
	}
	writeLine(report, Started{PID: pid, StartTicks: st.StartTicks})

	code := 0
	for {
		var ws syscall.WaitStatus
		reaped, err := syscall.Wait4(-1, &ws, 0, nil)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil {
			break // ECHILD: no child left, the command nor an orphan
		}
		if reaped != pid {
			continue // an orphaned descendant, reaped
		}
		exit := Exit{PID: pid, StartTicks: st.StartTicks, EndedAt: time.Now().UTC()}
		exit.ExitCode, exit.Signal = waitStatus(ws)
		exit.OOM = KilledByOOM(exit.ExitCode, exit.Signal, append([]string{o.Cgroup}, o.Join...))
		data, _ := json.Marshal(exit)
		if err := atomicfile.Write(o.ExitFile, data); err != nil {
			fmt.Fprintf(os.Stderr, "monitor: write the end of pid %d: %v\n", pid, err)
			code = 1
		}
		// The worker program that started it hears at once; one that
		// restarted since reads the file.
		writeLine(report, exit)
		_ = report.Close()
	}
	// Emptied, the cgroups go; a stop that found them empty before the
	// last reap could not remove them. Members left keep them (EBUSY).
	for _, cg := range append([]string{o.Cgroup}, o.Join...) {
		if cg != "" {
			_ = syscall.Rmdir(cg)
		}
	}
	return code
}

func start(o Options) (*exec.Cmd, error) {
	if len(o.Join) > 0 {
		return startHeld(o)
	}
	return startWith(o, exec.Command(o.Argv[0], o.Argv[1:]...), nil)
}

// startWith starts cmd as the worker's command: its environment, output,
// own process group and cgroup.
func startWith(o Options, cmd *exec.Cmd, extra []*os.File) (*exec.Cmd, error) {
	cmd.Env = commandEnv(os.Environ())
	cmd.Stdout = os.Stdout
	cmd.Stderr = os.Stderr
	cmd.ExtraFiles = extra
	// Its own group: a stop reaches every descendant that stays in it
	// with one kill, and the monitor is never in it.
	attr := &syscall.SysProcAttr{Setpgid: true}
	if o.Cgroup != "" {
		dir, err := os.Open(o.Cgroup)
		if err != nil {
			return nil, fmt.Errorf("open cgroup %s: %w", o.Cgroup, err)
		}
		defer dir.Close()
		attr.UseCgroupFD, attr.CgroupFD = true, int(dir.Fd())
	}
	cmd.SysProcAttr = attr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start worker command %q: %w", o.Argv[0], err)
	}
	return cmd, nil
}

// startHeld starts the command as a held copy of this binary, moves it
// into the v1 cgroups, and lets it exec the command: v1 has no
// CLONE_INTO_CGROUP, and a command moved after it started could fork
// outside its limits first.
func startHeld(o Options) (*exec.Cmd, error) {
	path, err := exec.LookPath(o.Argv[0])
	if err != nil {
		return nil, fmt.Errorf("start worker command %q: %w", o.Argv[0], err)
	}
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find the monitor's binary: %w", err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	defer w.Close()
	held := o
	held.Join, held.Argv = nil, append([]string{path}, o.Argv[1:]...)
	cmd, err := startWith(held, exec.Command(self, append([]string{Command, "--hold", "--"}, held.Argv...)...), []*os.File{r})
	if err != nil {
		return nil, err
	}
	if err := cgroup.Join(cmd.Process.Pid, o.Join); err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return nil, err
	}
	if _, err := w.Write([]byte{1}); err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return nil, fmt.Errorf("release the held command: %w", err)
	}
	return cmd, nil
}

// execWhenReleased is the held child: it waits for its monitor to have
// moved it into the worker's cgroups, then becomes the command.
func execWhenReleased(argv []string) int {
	release := os.NewFile(3, "monitor-release")
	var b [1]byte
	if n, _ := release.Read(b[:]); n != 1 || len(argv) == 0 {
		return 127 // the monitor gave up on it
	}
	_ = release.Close()
	err := syscall.Exec(argv[0], argv, os.Environ())
	fmt.Fprintf(os.Stderr, "monitor: exec %s: %v\n", argv[0], err)
	return 127
}

// permanent says whether a start failure is one a retry cannot fix.
func permanent(err error) bool {
	return errors.Is(err, exec.ErrNotFound) || errors.Is(err, exec.ErrDot) ||
		errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission) ||
		errors.Is(err, syscall.ENOEXEC) || errors.Is(err, syscall.EISDIR)
}

// writeLine writes one JSON line to the worker program; a worker program
// that is gone (EPIPE) is not an error.
func writeLine(f *os.File, v any) {
	data, _ := json.Marshal(v)
	_, _ = f.Write(append(data, '\n'))
}

// KilledByOOM says whether the out-of-memory killer ended the process: it
// died of SIGKILL (or is a shell that reports its command's, 137) and its
// cgroups counted an oom kill. A helper killed for memory while the
// process went on to end by itself is not its end.
func KilledByOOM(code int, signal string, cgroups []string) bool {
	return (signal == "SIGKILL" || code == 128+int(syscall.SIGKILL)) && cgroup.OOMKilled(cgroups...)
}

// StatusOf is the shell's view of an end: the exit code, or 128+N and the
// signal's name for a death by signal N; -1 for no state.
func StatusOf(state *os.ProcessState) (int, string) {
	if state == nil {
		return -1, ""
	}
	if ws, ok := state.Sys().(syscall.WaitStatus); ok {
		return waitStatus(ws)
	}
	return state.ExitCode(), ""
}

func waitStatus(ws syscall.WaitStatus) (int, string) {
	if ws.Signaled() {
		sig := ws.Signal()
		return 128 + int(sig), SignalName(sig)
	}
	return ws.ExitStatus(), ""
}

// SignalName is the conventional name of sig ("SIGKILL"); syscall's own
// String gives descriptions ("killed") instead.
func SignalName(sig syscall.Signal) string {
	if name, ok := signalNames[sig]; ok {
		return name
	}
	return "SIG" + strconv.Itoa(int(sig))
}

var signalNames = map[syscall.Signal]string{
	syscall.SIGHUP:    "SIGHUP",
	syscall.SIGINT:    "SIGINT",
	syscall.SIGQUIT:   "SIGQUIT",
	syscall.SIGILL:    "SIGILL",
	syscall.SIGTRAP:   "SIGTRAP",
	syscall.SIGABRT:   "SIGABRT",
	syscall.SIGBUS:    "SIGBUS",
	syscall.SIGFPE:    "SIGFPE",
	syscall.SIGKILL:   "SIGKILL",
	syscall.SIGUSR1:   "SIGUSR1",
	syscall.SIGSEGV:   "SIGSEGV",
	syscall.SIGUSR2:   "SIGUSR2",
	syscall.SIGPIPE:   "SIGPIPE",
	syscall.SIGALRM:   "SIGALRM",
	syscall.SIGTERM:   "SIGTERM",
	syscall.SIGSTKFLT: "SIGSTKFLT",
	syscall.SIGCHLD:   "SIGCHLD",
	syscall.SIGCONT:   "SIGCONT",
	syscall.SIGSTOP:   "SIGSTOP",
	syscall.SIGTSTP:   "SIGTSTP",
	syscall.SIGTTIN:   "SIGTTIN",
	syscall.SIGTTOU:   "SIGTTOU",
	syscall.SIGURG:    "SIGURG",
	syscall.SIGXCPU:   "SIGXCPU",
	syscall.SIGXFSZ:   "SIGXFSZ",
	syscall.SIGVTALRM: "SIGVTALRM",
	syscall.SIGPROF:   "SIGPROF",
	syscall.SIGWINCH:  "SIGWINCH",
	syscall.SIGIO:     "SIGIO",
	syscall.SIGPWR:    "SIGPWR",
	syscall.SIGSYS:    "SIGSYS",
}
