// Package connection holds the Temporal connection settings shared by the
// worker program and the starter CLI: environment first, flags override.
package connection

import (
	"fmt"
	"log/slog"
	"os"

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
}

// FromEnv reads TEMPORAL_ADDRESS and TEMPORAL_NAMESPACE.
func FromEnv() Options {
	return Options{
		Address:   envOr("TEMPORAL_ADDRESS", DefaultAddress),
		Namespace: envOr("TEMPORAL_NAMESPACE", DefaultNamespace),
	}
}

// AddFlags binds --address and --namespace, defaulting to the environment.
func (o *Options) AddFlags(fs *pflag.FlagSet) {
	env := FromEnv()
	fs.StringVar(&o.Address, "address", env.Address, "Temporal frontend host:port (env TEMPORAL_ADDRESS)")
	fs.StringVar(&o.Namespace, "namespace", env.Namespace, "Temporal namespace (env TEMPORAL_NAMESPACE)")
}

// Dial connects; quiet keeps the SDK's own logging to warnings, which a CLI
// wants.
func (o Options) Dial(quiet bool) (client.Client, error) {
	level := slog.LevelInfo
	if quiet {
		level = slog.LevelWarn
	}
	c, err := client.Dial(client.Options{
		HostPort:  o.Address,
		Namespace: o.Namespace,
		Logger:    tlog.NewStructuredLogger(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))),
	})
	if err != nil {
		return nil, fmt.Errorf("connecting to Temporal at %s (namespace %s): %w", o.Address, o.Namespace, err)
	}
	return c, nil
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
