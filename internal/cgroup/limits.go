package cgroup

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Limits are a worker's resource limits; a zero field sets none.
type Limits struct {
	MemoryBytes int64
	Processes   int
	CPUs        float64
}

// cpuPeriod is the CFS period the CPU limit is expressed in, in µs.
const cpuPeriod = 100000

// Limiter applies limits to a worker. Where the workers' cgroup v2 folder
// has the memory, pids and cpu controllers it writes the limits there; on
// a hybrid host, whose controllers are on the v1 hierarchies, it makes a
// cgroup per worker in each of them, which the worker's process must join
// before it runs (the monitor holds it until it has: Joins).
type Limiter struct {
	// V2 is true when the limits go into the worker's cgroup v2.
	V2 bool
	// V1 is the folder, per v1 controller (memory, pids, cpu), under which
	// each worker gets a cgroup of that controller.
	V1 map[string]string
}

var limitControllers = []string{"memory", "pids", "cpu"}

// DetectLimiter finds how this host can limit its workers: the v2
// controllers, enabled below the program's own cgroup, or else the v1
// controllers of a hybrid host, under folder name/host in each. It says
// why neither is possible.
func DetectLimiter(v2root, host string) (Limiter, error) {
	v2err := enableV2(v2root)
	if v2err == nil {
		return Limiter{V2: true}, nil
	}
	v1, v1err := v1Roots("/proc/self/mountinfo", "/proc/self/cgroup", host)
	if v1err == nil {
		return Limiter{V1: v1}, nil
	}
	return Limiter{}, fmt.Errorf("no cgroup controllers to limit with: v2: %v; v1: %v", v2err, v1err)
}

// enableV2 enables the controllers for the workers' cgroups under root
// and each folder between the worker program's own cgroup and root (the
// program's own cgroup must allow that: the hierarchy's root, or a
// delegated subtree whose processes sit in a leaf).
func enableV2(root string) error {
	// The subtree folder, then the host's folder in it.
	for _, dir := range []string{filepath.Dir(root), root} {
		have, err := os.ReadFile(filepath.Join(dir, "cgroup.controllers"))
		if err != nil {
			return err
		}
		for _, c := range limitControllers {
			if !strings.Contains(" "+strings.TrimSpace(string(have))+" ", " "+c+" ") {
				return fmt.Errorf("%s lacks the %s controller (it has %q)", dir, c, strings.TrimSpace(string(have)))
			}
		}
		if err := os.WriteFile(filepath.Join(dir, "cgroup.subtree_control"), []byte("+memory +pids +cpu"), 0); err != nil {
			return fmt.Errorf("enable the controllers below %s: %w", dir, err)
		}
	}
	return nil
}

// v1Roots makes <mount><own path>/worker-lifecycle/<host> in the memory,
// pids and cpu v1 hierarchies.
func v1Roots(mountinfo, self, host string) (map[string]string, error) {
	mounts, err := v1Mounts(mountinfo)
	if err != nil {
		return nil, err
	}
	own, err := os.ReadFile(self)
	if err != nil {
		return nil, err
	}
	roots := map[string]string{}
	for _, c := range limitControllers {
		mount, ok := mounts[c]
		if !ok {
			return nil, fmt.Errorf("no v1 %s hierarchy is mounted", c)
		}
		path := "/"
		for _, line := range strings.Split(string(own), "\n") {
			parts := strings.SplitN(line, ":", 3)
			if len(parts) == 3 && hasController(parts[1], c) {
				path = parts[2]
			}
		}
		dir := filepath.Join(mount, path, SubtreeName, host)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("create v1 %s cgroup %s: %w", c, dir, err)
		}
		probe := filepath.Join(dir, fmt.Sprintf("probe-%d", os.Getpid()))
		if err := os.Mkdir(probe, 0o755); err != nil {
			return nil, fmt.Errorf("create v1 %s cgroup %s: %w", c, probe, err)
		}
		_ = Remove(probe)
		roots[c] = dir
	}
	return roots, nil
}

func hasController(list, c string) bool {
	for _, x := range strings.Split(list, ",") {
		if x == c {
			return true
		}
	}
	return false
}

// v1Mounts maps each v1 controller to where its hierarchy is mounted.
func v1Mounts(mountinfo string) (map[string]string, error) {
	f, err := os.Open(mountinfo)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	mounts := map[string]string{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		for i, fl := range fields {
			if fl != "-" || i+3 >= len(fields) || i < 5 || fields[i+1] != "cgroup" {
				continue
			}
			for _, opt := range strings.Split(fields[i+3], ",") {
				for _, c := range limitControllers {
					if opt == c {
						mounts[c] = unescapeMount(fields[4])
					}
				}
			}
		}
	}
	return mounts, sc.Err()
}

// Apply sets lim for the worker whose cgroup v2 is dir. It returns the v1
// cgroups the worker's process must join before it runs (none where the
// limits are in dir).
func (l Limiter) Apply(dir string, lim Limits) (joins []string, err error) {
	if l.V2 {
		return nil, applyV2(dir, lim)
	}
	name := filepath.Base(dir)
	for _, c := range limitControllers {
		files := v1Files(c, lim)
		if files == nil {
			continue
		}
		cg, err := Create(l.V1[c], name)
		if err != nil {
			l.Release(joins)
			return nil, err
		}
		joins = append(joins, cg)
		for _, f := range files {
			if err := writeIfPresent(cg, f[0], f[1], f[0] == "memory.memsw.limit_in_bytes"); err != nil {
				l.Release(joins)
				return nil, err
			}
		}
	}
	return joins, nil
}

// Release removes the v1 cgroups of a worker whose processes are gone.
func (l Limiter) Release(joins []string) {
	for _, j := range joins {
		_ = Remove(j)
	}
}

func applyV2(dir string, lim Limits) error {
	files := [][2]string{}
	if lim.MemoryBytes > 0 {
		// No swap: past the limit the worker is killed, not slowed to a crawl.
		files = append(files, [2]string{"memory.max", strconv.FormatInt(lim.MemoryBytes, 10)}, [2]string{"memory.swap.max", "0"})
	}
	if lim.Processes > 0 {
		files = append(files, [2]string{"pids.max", strconv.Itoa(lim.Processes)})
	}
	if lim.CPUs > 0 {
		files = append(files, [2]string{"cpu.max", fmt.Sprintf("%d %d", int64(lim.CPUs*cpuPeriod), cpuPeriod)})
	}
	for _, f := range files {
		if err := writeIfPresent(dir, f[0], f[1], f[0] == "memory.swap.max"); err != nil {
			return err
		}
	}
	return nil
}

func v1Files(controller string, lim Limits) [][2]string {
	switch {
	case controller == "memory" && lim.MemoryBytes > 0:
		v := strconv.FormatInt(lim.MemoryBytes, 10)
		// memsw (memory + swap) after the memory limit, which it may not
		// be below; absent without swap accounting.
		return [][2]string{{"memory.limit_in_bytes", v}, {"memory.memsw.limit_in_bytes", v}}
	case controller == "pids" && lim.Processes > 0:
		return [][2]string{{"pids.max", strconv.Itoa(lim.Processes)}}
	case controller == "cpu" && lim.CPUs > 0:
		return [][2]string{{"cpu.cfs_period_us", strconv.Itoa(cpuPeriod)}, {"cpu.cfs_quota_us", strconv.FormatInt(int64(lim.CPUs*cpuPeriod), 10)}}
	}
	return nil
}

// writeIfPresent writes one control file; optional ones may be missing
// (swap accounting off).
func writeIfPresent(dir, file, value string, optional bool) error {
	err := os.WriteFile(filepath.Join(dir, file), []byte(value), 0)
	if optional && errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("set %s of %s to %s: %w", file, dir, value, err)
	}
	return nil
}

// Join moves pid into each of the cgroups.
func Join(pid int, cgroups []string) error {
	for _, cg := range cgroups {
		if err := os.WriteFile(filepath.Join(cg, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0); err != nil {
			return fmt.Errorf("move pid %d into %s: %w", pid, cg, err)
		}
	}
	return nil
}

// OOMKilled reports whether the out-of-memory killer ended a process of
// the cgroups: memory.events of a v2 cgroup, memory.oom_control of a v1
// memory cgroup.
func OOMKilled(cgroups ...string) bool {
	for _, cg := range cgroups {
		if cg == "" {
			continue
		}
		for _, file := range []string{"memory.events", "memory.oom_control"} {
			data, err := os.ReadFile(filepath.Join(cg, file))
			if err != nil {
				continue
			}
			for _, line := range strings.Split(string(data), "\n") {
				if f := strings.Fields(line); len(f) == 2 && f[0] == "oom_kill" && f[1] != "0" {
					return true
				}
			}
		}
	}
	return false
}
