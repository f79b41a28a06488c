package integration

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/commit-relay/worker-lifecycle/workflows"
)

// testPKI is a CA with one server and one client certificate, written as
// PEM files.
type testPKI struct {
	caFile, serverCert, serverKey, clientCert, clientKey string
	ca                                                   *x509.Certificate
}

func newTestPKI(t *testing.T, dir, serverName string) testPKI {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "lifecycle test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	require.NoError(t, err)
	ca, err := x509.ParseCertificate(caDER)
	require.NoError(t, err)
	p := testPKI{ca: ca, caFile: filepath.Join(dir, "ca.pem")}
	writePEM(t, p.caFile, "CERTIFICATE", caDER)

	issue := func(name string, serial int64, usage x509.ExtKeyUsage, dns []string) (certFile, keyFile string) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		require.NoError(t, err)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name}, DNSNames: dns,
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage}}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		require.NoError(t, err)
		keyDER, err := x509.MarshalECPrivateKey(key)
		require.NoError(t, err)
		certFile, keyFile = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem")
		writePEM(t, certFile, "CERTIFICATE", der)
		writePEM(t, keyFile, "EC PRIVATE KEY", keyDER)
		return certFile, keyFile
	}
	p.serverCert, p.serverKey = issue("server", 2, x509.ExtKeyUsageServerAuth, []string{serverName})
	p.clientCert, p.clientKey = issue("fleet-operator", 3, x509.ExtKeyUsageClientAuth, nil)
	return p
}

func writePEM(t *testing.T, path, kind string, der []byte) {
	t.Helper()
	require.NoError(t, os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), 0o600))
}

// authProxy stands where a production frontend would: it ends TLS, requires
// a client certificate signed by the CA and the API key, and forwards the
// gRPC calls to the dev server, which speaks neither.
type authProxy struct {
	address string
	// accepted counts the calls that passed both checks.
	accepted atomic.Int64
}

func startAuthProxy(t *testing.T, pki testPKI, apiKey, backend string) *authProxy {
	t.Helper()
	pair, err := tls.LoadX509KeyPair(pki.serverCert, pki.serverKey)
	require.NoError(t, err)
	pool := x509.NewCertPool()
	pool.AddCert(pki.ca)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := &authProxy{address: ln.Addr().String()}

	transport := &http.Transport{Protocols: new(http.Protocols)}
	transport.Protocols.SetUnencryptedHTTP2(true) // the dev server's gRPC is h2c
	target := &url.URL{Scheme: "http", Host: backend}
	forward := &httputil.ReverseProxy{
		Rewrite:       func(r *httputil.ProxyRequest) { r.SetURL(target) },
		Transport:     transport,
		FlushInterval: -1, // long polls stream
	}
	srv := &http.Server{
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{pair}, ClientCAs: pool,
			ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12,
			// In TLS 1.3 a client learns that its certificate was refused
			// only at its first write ("broken pipe"); in 1.2 the handshake
			// says why, which is what the test checks the CLI passes on.
			MaxVersion: tls.VersionTLS12},
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("Authorization") != "Bearer "+apiKey {
				w.Header().Set("Content-Type", "application/grpc")
				w.Header().Set("Grpc-Status", "16") // UNAUTHENTICATED
				w.Header().Set("Grpc-Message", "missing or wrong API key")
				w.WriteHeader(http.StatusOK)
				return
			}
			p.accepted.Add(1)
			forward.ServeHTTP(w, r)
		}),
		ErrorLog: nil,
	}
	go func() {
		if err := srv.ServeTLS(ln, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
			t.Logf("TLS proxy: %v", err)
		}
	}()
	t.Cleanup(func() { _ = srv.Close() })
	return p
}

// TestTLSAndAPIKeyEndToEnd runs a lifecycle with every connection of both
// programs going through mutual TLS and an API key: the worker program
// with the flags, the starter with the environment the Temporal CLI uses.
// A missing certificate, a wrong CA, a wrong key and plain text are each
// refused with an error that says so.
func TestTLSAndAPIKeyEndToEnd(t *testing.T) {
	dir := t.TempDir()
	const serverName, apiKey = "temporal.test", "test-api-key-7f3a"
	pki := newTestPKI(t, dir, serverName)
	proxy := startAuthProxy(t, pki, apiKey, h.address)

	const host = "it-host-tls"
	logPath := filepath.Join(h.dir, "worker-"+host+".log")
	logFile, err := os.Create(logPath)
	require.NoError(t, err)
	defer logFile.Close()
	worker := exec.Command(filepath.Join(h.dir, "bin", "worker"), "--address", proxy.address,
		"--tls-cert", pki.clientCert, "--tls-key", pki.clientKey, "--tls-ca", pki.caFile, "--tls-server-name", serverName,
		"--worker-types", h.typesFile, "--log-dir", h.logDir, "--state-dir", filepath.Join(dir, "state"), "--host", host)
	worker.Env = append(os.Environ(), "TEMPORAL_API_KEY="+apiKey)
	worker.Stdout, worker.Stderr = logFile, logFile
	require.NoError(t, worker.Start())
	t.Cleanup(func() { _ = worker.Process.Kill(); _ = worker.Wait() })

	tlsEnv := []string{"TEMPORAL_ADDRESS=" + proxy.address, "TEMPORAL_TLS_CERT=" + pki.clientCert, "TEMPORAL_TLS_KEY=" + pki.clientKey,
		"TEMPORAL_TLS_CA=" + pki.caFile, "TEMPORAL_TLS_SERVER_NAME=" + serverName, "TEMPORAL_API_KEY=" + apiKey}
	starter := func(env []string, args ...string) (string, string, int) { return h.starterWith(t, env, args...) }
	with := func(env []string, name, value string) []string {
		out := []string{}
		for _, e := range env {
			if !strings.HasPrefix(e, name+"=") {
				out = append(out, e)
			}
		}
		if value != "" {
			out = append(out, name+"="+value)
		}
		return out
	}

	before := h.budget(t)
	id := newID("sleeper")
	var out, errOut string
	var code int
	require.Eventually(t, func() bool {
		out, errOut, code = starter(tlsEnv, "spawn", "--type", "sleeper-worker", "--task-id", "task-tls", "--master", "development-master",
			"--worker-id", id, "--host", host, "-o", "json")
		return code == 0 || strings.Contains(errOut, "already live")
	}, 30*time.Second, time.Second, "the worker program polls through TLS: %s\n%s", errOut, tail(logPath, 10))
	spec := h.status(t, id)
	require.Equal(t, workflows.StatusRunning, spec.Status)
	require.Equal(t, host, spec.Host, "started by the worker program that connects through TLS")
	_, errOut, code = starter(tlsEnv, "heartbeat", id, "--tokens-used", "7")
	require.Zero(t, code, errOut)

	for _, tc := range []struct {
		name string
		env  []string
		want string
	}{
		{"no client certificate", with(with(tlsEnv, "TEMPORAL_TLS_CERT", ""), "TEMPORAL_TLS_KEY", ""), "(if the server requires a client certificate, give --tls-cert and --tls-key)"},
		{"wrong CA", with(tlsEnv, "TEMPORAL_TLS_CA", pki.clientCert), "certificate signed by unknown authority"},
		{"wrong server name", with(tlsEnv, "TEMPORAL_TLS_SERVER_NAME", "elsewhere.test"), "not elsewhere.test"},
		{"wrong API key", with(tlsEnv, "TEMPORAL_API_KEY", "guess"), "missing or wrong API key"},
		{"no API key", with(tlsEnv, "TEMPORAL_API_KEY", ""), "missing or wrong API key"},
		{"plain text", []string{"TEMPORAL_ADDRESS=" + proxy.address}, "connecting to Temporal at " + proxy.address},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, errOut, code := starter(tc.env, "status", id)
			assert.Equal(t, 1, code, errOut)
			assert.Contains(t, errOut, tc.want)
			assert.Equal(t, 1, strings.Count(strings.TrimSpace(errOut), "\n")+1, "one line: %q", errOut)
		})
	}

	out, errOut, code = starter(tlsEnv, "shutdown", id, "-o", "json")
	require.Zero(t, code, errOut)
	require.Contains(t, out, `"status": "completed"`)
	require.Contains(t, out, `"refunded": 1000`)
	requireGone(t, spec.PID)
	require.Equal(t, before, h.budget(t))
	require.Positive(t, proxy.accepted.Load())
}
