// Package connection holds the Temporal connection settings shared by the
// worker program and the starter CLI: environment first, flags override.
package connection

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/spf13/pflag"
	"go.temporal.io/sdk/client"
	tlog "go.temporal.io/sdk/log"
)

// Defaults when neither a flag nor the environment says otherwise.
const (
	DefaultAddress   = "localhost:7233"
	DefaultNamespace = "default"
)

// Options are the settings of one connection.
type Options struct {
	Address   string
	Namespace string
	// TLS: a client certificate and key (mTLS), the CA that signed the
	// server's certificate, and the name to check it against.
	TLSCert       string
	TLSKey        string
	TLSCA         string
	TLSServerName string
	// APIKey authenticates to a server that takes API keys (Temporal
	// Cloud); it implies TLS.
	APIKey string
	// Metrics receives the SDK's metrics and what workflows and activities
	// record (internal/metrics); nil records none.
	Metrics client.MetricsHandler
}

// FromEnv reads TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, TEMPORAL_TLS_CERT,
// TEMPORAL_TLS_KEY, TEMPORAL_TLS_CA, TEMPORAL_TLS_SERVER_NAME and
// TEMPORAL_API_KEY (the names the Temporal CLI uses).
func FromEnv() Options {
	return Options{
		Address:       envOr("TEMPORAL_ADDRESS", DefaultAddress),
		Namespace:     envOr("TEMPORAL_NAMESPACE", DefaultNamespace),
		TLSCert:       os.Getenv("TEMPORAL_TLS_CERT"),
		TLSKey:        os.Getenv("TEMPORAL_TLS_KEY"),
		TLSCA:         os.Getenv("TEMPORAL_TLS_CA"),
		TLSServerName: os.Getenv("TEMPORAL_TLS_SERVER_NAME"),
		APIKey:        os.Getenv("TEMPORAL_API_KEY"),
	}
}

// AddFlags binds the connection flags, defaulting to the environment. The
// API key has no flag: a key on a command line ends up in shell histories
// and process lists.
func (o *Options) AddFlags(fs *pflag.FlagSet) {
	env := FromEnv()
	o.APIKey = env.APIKey
	fs.StringVar(&o.Address, "address", env.Address, "Temporal frontend host:port (env TEMPORAL_ADDRESS)")
	fs.StringVar(&o.Namespace, "namespace", env.Namespace, "Temporal namespace (env TEMPORAL_NAMESPACE)")
	fs.StringVar(&o.TLSCert, "tls-cert", env.TLSCert, "client certificate file for mTLS (env TEMPORAL_TLS_CERT)")
	fs.StringVar(&o.TLSKey, "tls-key", env.TLSKey, "client key file for mTLS (env TEMPORAL_TLS_KEY)")
	fs.StringVar(&o.TLSCA, "tls-ca", env.TLSCA, "CA certificate file that signed the server's certificate (env TEMPORAL_TLS_CA)")
	fs.StringVar(&o.TLSServerName, "tls-server-name", env.TLSServerName, "server name to verify the certificate against (env TEMPORAL_TLS_SERVER_NAME)")
}

// ClientOptions builds the SDK's options, checking the TLS files first so
// that a wrong path is named instead of failing in the handshake.
func (o Options) ClientOptions(logger tlog.Logger) (client.Options, error) {
	opts := client.Options{HostPort: o.Address, Namespace: o.Namespace, Logger: logger, MetricsHandler: o.Metrics}
	tlsConfig, err := o.tlsConfig()
	if err != nil {
		return opts, err
	}
	opts.ConnectionOptions.TLS = tlsConfig
	if o.APIKey != "" {
		opts.Credentials = client.NewAPIKeyStaticCredentials(o.APIKey)
		if opts.ConnectionOptions.TLS == nil {
			opts.ConnectionOptions.TLS = &tls.Config{MinVersion: tls.VersionTLS12, ServerName: o.TLSServerName}
		}
	}
	return opts, nil
}

func (o Options) tlsConfig() (*tls.Config, error) {
	if o.TLSCert == "" && o.TLSKey == "" && o.TLSCA == "" && o.TLSServerName == "" {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: o.TLSServerName}
	if (o.TLSCert == "") != (o.TLSKey == "") {
		return nil, errors.New("--tls-cert and --tls-key go together: give both or neither")
	}
	if o.TLSCert != "" {
		pair, err := tls.LoadX509KeyPair(o.TLSCert, o.TLSKey)
		if err != nil {
			return nil, fmt.Errorf("loading the client certificate %s and key %s: %w", o.TLSCert, o.TLSKey, err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	if o.TLSCA != "" {
		pem, err := os.ReadFile(o.TLSCA)
		if err != nil {
			return nil, fmt.Errorf("reading the CA certificate: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("the CA file %s holds no PEM certificate", o.TLSCA)
		}
		cfg.RootCAs = pool
	}
	return cfg, nil
}

// Dial connects; quiet keeps the SDK's own logging to warnings, which a CLI
// wants.
func (o Options) Dial(quiet bool) (client.Client, error) {
	return o.DialContext(context.Background(), quiet)
}

// DialContext is Dial bounded by ctx (a probe of whether the server
// answers).
func (o Options) DialContext(ctx context.Context, quiet bool) (client.Client, error) {
	level := slog.LevelInfo
	if quiet {
		level = slog.LevelWarn
	}
	opts, err := o.ClientOptions(tlog.NewStructuredLogger(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))))
	if err != nil {
		return nil, err
	}
	c, err := client.DialContext(ctx, opts)
	if err != nil {
		hint := ""
		if o.TLSCert == "" && strings.Contains(err.Error(), "authentication handshake failed") {
			// The server's alert does not say that a certificate was missing.
			hint = " (if the server requires a client certificate, give --tls-cert and --tls-key)"
		}
		return nil, fmt.Errorf("connecting to Temporal at %s (namespace %s): %w%s", o.Address, o.Namespace, err, hint)
	}
	return c, nil
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
