package deploy

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// promtool is Debian's, from the prometheus package (make tools).
func promtool(t *testing.T, args ...string) (string, error) {
	t.Helper()
	bin, err := exec.LookPath("promtool")
	require.NoError(t, err, "promtool checks the alert rules: apt-get install prometheus (make tools does)")
	cmd := exec.Command(bin, args...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestAlertRules: the rules load, the scrape config is valid, and each
// alert fires on the series of alerts_test.yml that should fire it and on
// none of those that should not.
func TestAlertRules(t *testing.T) {
	dir := filepath.Join(root, "deploy", "prometheus")
	out, err := promtool(t, "check", "rules", filepath.Join(dir, "alerts.yml"))
	require.NoError(t, err, out)
	require.Contains(t, out, "SUCCESS: 10 rules found")
	out, err = promtool(t, "check", "config", filepath.Join(dir, "prometheus.yml"))
	require.NoError(t, err, out)
	out, err = promtool(t, "test", "rules", filepath.Join(dir, "alerts_test.yml"))
	require.NoError(t, err, out)

	// The tests can fail: with the zombie rule's threshold raised, the
	// series that fire it no longer do.
	rules, err := os.ReadFile(filepath.Join(dir, "alerts.yml"))
	require.NoError(t, err)
	broken := t.TempDir()
	changed := strings.Replace(string(rules), "increase(worker_lifecycle_zombies_detected_total[10m])) > 0", "increase(worker_lifecycle_zombies_detected_total[10m])) > 5", 1)
	require.NotEqual(t, string(rules), changed)
	require.NoError(t, os.WriteFile(filepath.Join(broken, "alerts.yml"), []byte(changed), 0o644))
	tests, err := os.ReadFile(filepath.Join(dir, "alerts_test.yml"))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(broken, "alerts_test.yml"), tests, 0o644))
	out, err = promtool(t, "test", "rules", filepath.Join(broken, "alerts_test.yml"))
	require.Error(t, err, "a rule that does not fire must fail its test")
	require.Contains(t, out, "WorkerZombiesAppearing")
}
