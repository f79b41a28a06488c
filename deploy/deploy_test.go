// Package deploy holds the deployment files: docker-compose.yml's parts, the
// schema script and the cluster config of scripts/cluster.sh. Docker cannot
// run here, so these tests check what can be checked without an engine; the
// same steps run for real in `make test-cluster`.
package deploy

import (
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

const root = ".."

// composeConfig is `docker-compose config`: the file as Compose reads it,
// which fails on anything Compose would refuse.
func composeConfig(t *testing.T) map[string]string {
	t.Helper()
	bin, err := exec.LookPath("docker-compose")
	require.NoError(t, err, "Debian's docker-compose checks the compose file without an engine: apt-get install docker-compose (make tools does)")
	quiet := exec.Command(bin, "config", "-q")
	quiet.Dir = root
	out, err := quiet.CombinedOutput()
	require.NoError(t, err, "docker-compose config -q: %s", out)

	full := exec.Command(bin, "config")
	full.Dir = root
	out, err = full.Output()
	require.NoError(t, err)
	// Its output is normalised YAML: a service is a two-space key under
	// "services:", its settings are indented further.
	services := map[string]string{}
	var name string
	inServices := false
	for _, line := range strings.Split(string(out), "\n") {
		switch {
		case line == "services:":
			inServices = true
		case !strings.HasPrefix(line, " "):
			inServices = false
		case inServices && strings.HasPrefix(line, "  ") && !strings.HasPrefix(line, "   ") && strings.HasSuffix(line, ":"):
			name = strings.TrimSuffix(strings.TrimSpace(line), ":")
		case inServices && name != "":
			services[name] += line + "\n"
		}
	}
	return services
}

func image(service string) string {
	m := regexp.MustCompile(`(?m)^    image: (\S+)$`).FindStringSubmatch(service)
	if m == nil {
		return ""
	}
	return m[1]
}

// listItems returns the items of a list setting ("command", "entrypoint").
func listItems(service, key string) []string {
	var items []string
	in := false
	for _, line := range strings.Split(service, "\n") {
		switch {
		case line == "    "+key+":":
			in = true
		case in && strings.HasPrefix(line, "    - "):
			items = append(items, strings.TrimPrefix(line, "    - "))
		default:
			in = false
		}
	}
	return items
}

func TestComposeFileStartsTheWholeSystem(t *testing.T) {
	services := composeConfig(t)
	for _, name := range []string{"postgresql", "temporal-schema", "temporal", "temporal-ui", "setup", "worker", "prometheus", "grafana"} {
		require.Contains(t, services, name)
	}
	// Third-party images are pinned to a version, never a moving tag.
	for name, svc := range services {
		img := image(svc)
		if strings.Contains(svc, "    build:") {
			continue // built from this repository
		}
		require.Regexp(t, `^[\w./-]+:v?\d[\w.-]*$`, img, "service %s: pin the image to a version", name)
	}
	// The server is the version scripts/cluster.sh builds and CI tests.
	script, err := os.ReadFile(filepath.Join(root, "scripts", "cluster.sh"))
	require.NoError(t, err)
	version := regexp.MustCompile(`(?m)^SERVER_VERSION=v(\S+)$`).FindSubmatch(script)
	require.NotNil(t, version, "scripts/cluster.sh names SERVER_VERSION")
	require.Equal(t, "temporalio/server:"+string(version[1]), image(services["temporal"]))
	require.Equal(t, "temporalio/admin-tools:"+string(version[1]), image(services["temporal-schema"]))

	// The schema and the setup are the steps scripts/cluster.sh runs.
	require.Equal(t, []string{"/bin/sh", "/deploy/schema.sh"}, listItems(services["temporal-schema"], "entrypoint"))
	require.Contains(t, string(script), "deploy/schema.sh")
	setup := strings.Join(listItems(services["setup"], "command"), " ")
	require.Equal(t, []string{"/usr/local/bin/starter"}, listItems(services["setup"], "entrypoint"))
	require.Contains(t, string(script), `bin/starter" --address "$ADDRESS" `+setup,
		"docker-compose.yml and scripts/cluster.sh set the server up with the same command")
	// The worker program waits for that setup to have succeeded.
	require.Regexp(t, `(?s)depends_on:\s+setup:\s+condition: service_completed_successfully`, services["worker"])
}

func TestImageIsStaticAndUnprivileged(t *testing.T) {
	dockerfile, err := os.ReadFile(filepath.Join(root, "Dockerfile"))
	require.NoError(t, err)
	text := string(dockerfile)
	stages := regexp.MustCompile(`(?m)^FROM `).Split(text, -1)[1:]
	require.GreaterOrEqual(t, len(stages), 2, "multi-stage: a build stage and a runtime stage")
	require.Regexp(t, `^golang:\S+ AS build\n`, stages[0])
	user := regexp.MustCompile(`(?m)^USER (\S+)$`).FindStringSubmatch(stages[len(stages)-1])
	require.NotNil(t, user, "the runtime stage names a USER")
	require.NotRegexp(t, `^(0|root)(:|$)`, user[1], "the worker program does not run as root")

	// Build as the Dockerfile does (its RUN line is a shell command) and
	// check there is no dynamic linking.
	build := regexp.MustCompile(`(?m)^RUN (CGO_ENABLED=0 go build .* -o )/out/( .*)$`).FindStringSubmatch(text)
	require.NotNil(t, build, "the Dockerfile builds with CGO_ENABLED=0 into /out/")
	out := t.TempDir()
	cmd := exec.Command("sh", "-c", build[1]+out+"/"+build[2])
	cmd.Dir = root
	msg, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s: %s", cmd.Args, msg)
	for _, bin := range []string{"worker", "starter", "demo-agent"} {
		f, err := elf.Open(filepath.Join(out, bin))
		require.NoError(t, err)
		for _, p := range f.Progs {
			require.NotEqual(t, elf.PT_INTERP, p.Type, "%s asks for a dynamic loader", bin)
		}
		libs, err := f.ImportedLibraries()
		require.NoError(t, err)
		require.Empty(t, libs, "%s links shared libraries", bin)
		f.Close()
	}
}
