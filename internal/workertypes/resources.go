package workertypes

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Floors of the resource limits: below them no agent runs at all, so a
// types file asking for less is a mistake, refused at start.
const (
	// MinMemoryBytes: a Node.js or Python agent needs tens of MiB to start.
	MinMemoryBytes = 32 << 20
	// MinProcesses: the kernel counts threads against it, and a Node.js
	// agent alone runs about a dozen.
	MinProcesses = 16
	// MinCPUs is 5% of one core.
	MinCPUs = 0.05
)

// Resources are a type's limits, applied to each worker's cgroup (systemd's
// MemoryMax, TasksMax and CPUQuota). A zero field sets no limit.
type Resources struct {
	// Memory is a size: bytes, or a number with K, M, G, T (powers of
	// 1024, also written KiB, MiB...). Past it the kernel's out-of-memory
	// killer ends a process of the worker, reported as reason oom.
	Memory string `json:"memory,omitempty"`
	// Processes bounds the worker's processes and threads together.
	Processes int `json:"processes,omitempty"`
	// CPUs is how many cores' worth of CPU time the worker may use (1.5:
	// one and a half).
	CPUs float64 `json:"cpus,omitempty"`
}

// Limits are Resources parsed.
type Limits struct {
	MemoryBytes int64
	Processes   int
	CPUs        float64
}

// Any says whether a limit is set.
func (l Limits) Any() bool { return l.MemoryBytes > 0 || l.Processes > 0 || l.CPUs > 0 }

// Limits parses the resources; they were validated when the types file
// was loaded.
func (r Resources) Limits() Limits {
	mem, _ := ParseSize(r.Memory)
	return Limits{MemoryBytes: mem, Processes: r.Processes, CPUs: r.CPUs}
}

func (r Resources) validate() []fieldError {
	var errs []fieldError
	if r.Memory != "" {
		mem, err := ParseSize(r.Memory)
		switch {
		case err != nil:
			errs = append(errs, fieldError{"resources.memory", err.Error()})
		case mem < MinMemoryBytes:
			errs = append(errs, fieldError{"resources.memory", fmt.Sprintf("%s is below the floor of %d MiB", r.Memory, MinMemoryBytes>>20)})
		}
	}
	if r.Processes != 0 && r.Processes < MinProcesses {
		errs = append(errs, fieldError{"resources.processes", fmt.Sprintf("%d is below the floor of %d (threads count too)", r.Processes, MinProcesses)})
	}
	if r.CPUs != 0 && (r.CPUs < MinCPUs || math.IsNaN(r.CPUs) || math.IsInf(r.CPUs, 0)) {
		errs = append(errs, fieldError{"resources.cpus", fmt.Sprintf("%g is below the floor of %g", r.CPUs, MinCPUs)})
	}
	return errs
}

var sizeUnits = []struct {
	suffix string
	shift  uint
}{
	{"KIB", 10}, {"MIB", 20}, {"GIB", 30}, {"TIB", 40},
	{"K", 10}, {"M", 20}, {"G", 30}, {"T", 40}, {"B", 0},
}

// ParseSize reads a size: "536870912", "512M", "512MiB", "1.5G".
func ParseSize(s string) (int64, error) {
	t := strings.ToUpper(strings.TrimSpace(s))
	shift := uint(0)
	for _, u := range sizeUnits {
		if strings.HasSuffix(t, u.suffix) {
			t, shift = strings.TrimSpace(strings.TrimSuffix(t, u.suffix)), u.shift
			break
		}
	}
	v, err := strconv.ParseFloat(t, 64)
	if err != nil || v <= 0 || math.IsInf(v, 0) || math.IsNaN(v) {
		return 0, fmt.Errorf("%q is not a size (bytes, or a number with K, M, G or T: 512M, 1.5GiB)", s)
	}
	b := v * float64(uint64(1)<<shift)
	if b > math.MaxInt64/2 {
		return 0, fmt.Errorf("%q is too large", s)
	}
	return int64(b), nil
}
