package connection

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// selfSigned writes a certificate and its key to dir.
func selfSigned(t *testing.T, dir string) (certPath, keyPath string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "worker-lifecycle-test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	keyDER, err := x509.MarshalECPrivateKey(key)
	require.NoError(t, err)
	certPath, keyPath = filepath.Join(dir, "client.pem"), filepath.Join(dir, "client.key")
	require.NoError(t, os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600))
	require.NoError(t, os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600))
	return certPath, keyPath
}

func TestPlainConnectionHasNoTLS(t *testing.T) {
	opts, err := Options{Address: "localhost:7233", Namespace: "default"}.ClientOptions(nil)
	require.NoError(t, err)
	require.Nil(t, opts.ConnectionOptions.TLS)
	require.Nil(t, opts.Credentials)
}

func TestMutualTLS(t *testing.T) {
	cert, key := selfSigned(t, t.TempDir())
	opts, err := Options{Address: "temporal.example:7233", TLSCert: cert, TLSKey: key, TLSCA: cert, TLSServerName: "temporal.example"}.ClientOptions(nil)
	require.NoError(t, err)
	cfg := opts.ConnectionOptions.TLS
	require.NotNil(t, cfg)
	require.Len(t, cfg.Certificates, 1)
	require.NotNil(t, cfg.RootCAs)
	require.Equal(t, "temporal.example", cfg.ServerName)
}

func TestAPIKeyImpliesTLS(t *testing.T) {
	opts, err := Options{Address: "ns.tmprl.cloud:7233", APIKey: "secret"}.ClientOptions(nil)
	require.NoError(t, err)
	require.NotNil(t, opts.Credentials)
	require.NotNil(t, opts.ConnectionOptions.TLS)
}

func TestBadTLSSettingsAreNamed(t *testing.T) {
	dir := t.TempDir()
	cert, _ := selfSigned(t, dir)
	notPEM := filepath.Join(dir, "ca.txt")
	require.NoError(t, os.WriteFile(notPEM, []byte("not a certificate"), 0o600))
	for _, tc := range []struct {
		opts Options
		want string
	}{
		{Options{TLSCert: cert}, "--tls-cert and --tls-key go together"},
		{Options{TLSCert: cert, TLSKey: filepath.Join(dir, "missing.key")}, "loading the client certificate"},
		{Options{TLSCA: filepath.Join(dir, "missing-ca.pem")}, "reading the CA certificate"},
		{Options{TLSCA: notPEM}, "holds no PEM certificate"},
	} {
		_, err := tc.opts.ClientOptions(nil)
		require.ErrorContains(t, err, tc.want)
	}
}

func TestEnvironmentThenFlags(t *testing.T) {
	t.Setenv("TEMPORAL_ADDRESS", "env-host:7233")
	t.Setenv("TEMPORAL_API_KEY", "from-env")
	require.Equal(t, "env-host:7233", FromEnv().Address)
	require.Equal(t, "from-env", FromEnv().APIKey)
}
