package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/commit-relay/worker-lifecycle/activities"
	"github.com/commit-relay/worker-lifecycle/internal/workertypes"
)

func TestContainmentFlagIsChecked(t *testing.T) {
	_, err := chooseContainment("jail", "", "h")
	require.EqualError(t, err, `--containment "jail": must be auto, cgroup or process-group`)
	c, err := chooseContainment(activities.ContainmentProcessGroup, "", "h")
	require.NoError(t, err)
	require.Equal(t, containment{mode: activities.ContainmentProcessGroup}, c)
	_, err = chooseContainment(activities.ContainmentCgroup, filepath.Join(t.TempDir(), "not-a-cgroup"), "h")
	require.ErrorContains(t, err, "--containment cgroup: ")
	c, err = chooseContainment("auto", filepath.Join(t.TempDir(), "not-a-cgroup"), "h")
	require.NoError(t, err)
	require.Equal(t, activities.ContainmentProcessGroup, c.mode)
	require.Contains(t, c.why, "is not in a cgroup v2 hierarchy")
}

// A types file whose limits this host cannot apply is refused at start.
func TestLimitsWithoutCgroupsAreRefusedAtStart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "types.json")
	require.NoError(t, os.WriteFile(path, []byte(`{"types": {"fix-worker": {"resources": {"memory": "1G"}}}}`), 0o644))
	reg, err := workertypes.Load(path)
	require.NoError(t, err)
	_, err = chooseLimiter(reg, containment{mode: activities.ContainmentProcessGroup, why: "no cgroup v2 hierarchy is mounted"}, "h", true)
	require.EqualError(t, err, "worker types fix-worker set resources, which need cgroups; this host contains by process-group: no cgroup v2 hierarchy is mounted")

	l, err := chooseLimiter(workertypes.Defaults(), containment{mode: activities.ContainmentProcessGroup}, "h", false)
	require.NoError(t, err)
	require.Nil(t, l, "no type sets limits: nothing to apply")
}
