// Package cgroup contains each worker in a cgroup v2 of its own, where the
// host allows it: membership is kept by the kernel, so no descendant
// escapes by clearing its environment or leaving its process group and
// session, and cgroup.kill ends every member at once (systemd's
// KillMode=control-group).
//
// It works on a pure v2 host (/sys/fs/cgroup) and on a hybrid one (the v2
// "unified" mount beside the v1 controllers), as root or in a subtree
// delegated to the worker program (systemd's Delegate=yes): the workers'
// cgroups are created under the worker program's own.
package cgroup

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// SubtreeName is the folder, under the worker program's own cgroup, that
// holds one cgroup per worker.
const SubtreeName = "worker-lifecycle"

// Detect returns the folder under which this program can create its
// workers' cgroups, or why it cannot: no cgroup v2 hierarchy mounted, no
// cgroup.kill (Linux before 5.14), or no right to create one.
func Detect() (string, error) {
	mount, err := v2Mount("/proc/self/mountinfo")
	if err != nil {
		return "", err
	}
	own, err := ownPath("/proc/self/cgroup")
	if err != nil {
		return "", err
	}
	return Prepare(filepath.Join(mount, own, SubtreeName))
}

// Prepare makes root usable as the parent of the workers' cgroups and
// proves it: a child can be created in it, has cgroup.kill, and can be
// removed again.
func Prepare(root string) (string, error) {
	if err := os.MkdirAll(root, 0o755); err != nil {
		return "", fmt.Errorf("create cgroup %s: %w", root, err)
	}
	if _, err := os.Stat(filepath.Join(root, "cgroup.procs")); err != nil {
		return "", fmt.Errorf("%s is not in a cgroup v2 hierarchy: %w", root, err)
	}
	probe, err := Create(root, fmt.Sprintf("probe-%d", os.Getpid()))
	if err != nil {
		return "", err
	}
	defer Remove(probe)
	if _, err := os.Stat(filepath.Join(probe, "cgroup.kill")); err != nil {
		return "", fmt.Errorf("cgroup %s has no cgroup.kill (needs Linux 5.14): %w", probe, err)
	}
	// Starting a process in it takes clone3, which an older seccomp
	// profile refuses (ENOSYS); better known now than at every spawn.
	if err := startIn(probe); err != nil {
		return "", fmt.Errorf("start a process in cgroup %s: %w", probe, err)
	}
	return root, nil
}

// startIn runs this program's own binary, which exits at once on a bad
// flag, in the cgroup dir, as every worker's process will be started.
func startIn(dir string) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	cg, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer cg.Close()
	cmd := exec.Command(self, "--cgroup-probe-exits-at-once")
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(cg.Fd())}
	if err := cmd.Start(); err != nil {
		return err
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	return nil
}

// Create makes the cgroup root/name; one that exists already is reused.
func Create(root, name string) (string, error) {
	if name == "" || strings.ContainsAny(name, "/.") {
		return "", fmt.Errorf("invalid cgroup name %q", name)
	}
	dir := filepath.Join(root, name)
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return "", fmt.Errorf("create cgroup %s: %w", dir, err)
	}
	return dir, nil
}

// Procs lists the processes in the cgroup dir. A cgroup that does not
// exist yields an error for which errors.Is(err, fs.ErrNotExist) holds.
//
// Processes in cgroups below dir (an agent may make its own) are members
// too.
func Procs(dir string) ([]int, error) {
	pids, err := procsOf(dir)
	if err != nil {
		return nil, err
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if e.IsDir() {
			sub, err := Procs(filepath.Join(dir, e.Name()))
			if err != nil && !errors.Is(err, fs.ErrNotExist) {
				return nil, err
			}
			pids = append(pids, sub...)
		}
	}
	return pids, nil
}

func procsOf(dir string) ([]int, error) {
	data, err := readControl(dir, "cgroup.procs")
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, f := range strings.Fields(string(data)) {
		pid, err := strconv.Atoi(f)
		if err != nil {
			return nil, fmt.Errorf("cgroup.procs of %s: %q is not a PID", dir, f)
		}
		pids = append(pids, pid)
	}
	return pids, nil
}

// readControl reads a control file of the cgroup dir. A cgroup removed
// while it is read (ENODEV) is gone like one that does not exist.
func readControl(dir, file string) ([]byte, error) {
	data, err := os.ReadFile(filepath.Join(dir, file))
	if errors.Is(err, syscall.ENODEV) {
		return nil, fmt.Errorf("cgroup %s was removed: %w", dir, fs.ErrNotExist)
	}
	return data, err
}

// Kill sends SIGKILL to every process of the cgroup dir and of its
// descendants, in one write that a forking member cannot outrun. A cgroup
// that is gone has nothing left to kill.
func Kill(dir string) error {
	err := os.WriteFile(filepath.Join(dir, "cgroup.kill"), []byte("1"), 0)
	if errors.Is(err, syscall.ENODEV) {
		return nil // being removed: nothing is left in it to kill
	}
	if errors.Is(err, fs.ErrNotExist) {
		if _, statErr := os.Stat(dir); errors.Is(statErr, fs.ErrNotExist) {
			return nil
		}
	}
	if err != nil {
		return fmt.Errorf("kill cgroup %s: %w", dir, err)
	}
	return nil
}

// Remove deletes the cgroup dir once it is empty; one that is gone is not
// an error, one with members left is (EBUSY).
//
// Cgroups an agent made below it go first.
func Remove(dir string) error {
	if dir == "" {
		return nil
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if e.IsDir() {
			if err := Remove(filepath.Join(dir, e.Name())); err != nil {
				return err
			}
		}
	}
	err := syscall.Rmdir(dir)
	if err == nil || errors.Is(err, syscall.ENOENT) {
		return nil
	}
	return fmt.Errorf("remove cgroup %s: %w", dir, err)
}

// RemoveWhenEmptied removes the cgroup dir, waiting up to within for the
// members it just lost to be reaped: a killed process still holds its
// cgroup until its parent (init, for an orphan) collects it.
func RemoveWhenEmptied(dir string, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		err := Remove(dir)
		if err == nil || !errors.Is(err, syscall.EBUSY) || !time.Now().Before(deadline) {
			return err
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Populated reports whether the cgroup dir or a descendant has a live
// process; a cgroup that is gone has none.
func Populated(dir string) (bool, error) {
	data, err := readControl(dir, "cgroup.events")
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "populated "); ok {
			return v != "0", nil
		}
	}
	return false, fmt.Errorf("cgroup.events of %s has no populated line", dir)
}

// v2Mount finds where the cgroup v2 hierarchy is mounted: /sys/fs/cgroup on
// a pure v2 host, /sys/fs/cgroup/unified on a hybrid one.
func v2Mount(mountinfo string) (string, error) {
	f, err := os.Open(mountinfo)
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		if point, ok := parseMountinfoLine(sc.Text()); ok {
			return point, nil
		}
	}
	if err := sc.Err(); err != nil {
		return "", err
	}
	return "", errors.New("no cgroup v2 hierarchy is mounted (a v1-only host)")
}

// parseMountinfoLine returns the mount point of a cgroup2 line of
// /proc/self/mountinfo: "36 25 0:31 / /sys/fs/cgroup rw,... - cgroup2 cgroup2 rw".
func parseMountinfoLine(line string) (string, bool) {
	fields := strings.Fields(line)
	for i, f := range fields {
		if f == "-" && i+1 < len(fields) && i >= 5 {
			if fields[i+1] != "cgroup2" {
				return "", false
			}
			return unescapeMount(fields[4]), true
		}
	}
	return "", false
}

// unescapeMount undoes mountinfo's octal escapes of space, tab, newline
// and backslash.
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// ownPath is this process's cgroup in the v2 hierarchy: the "0::" line of
// /proc/self/cgroup.
func ownPath(file string) (string, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "0::"); ok {
			return rest, nil
		}
	}
	return "", fmt.Errorf("%s has no cgroup v2 entry (0::)", file)
}
