package config

import "time"

// DefaultCallbackTimeout bounds one callback script.
const DefaultCallbackTimeout = 60 * time.Second

// Callbacks are Patroni's postgresql.callbacks: a command per event, run
// as `command action role scope`.
type Callbacks struct {
	OnStart      string `yaml:"on_start" json:"on_start,omitempty"`
	OnStop       string `yaml:"on_stop" json:"on_stop,omitempty"`
	OnRestart    string `yaml:"on_restart" json:"on_restart,omitempty"`
	OnReload     string `yaml:"on_reload" json:"on_reload,omitempty"`
	OnRoleChange string `yaml:"on_role_change" json:"on_role_change,omitempty"`
	// Timeout kills a script that runs longer (pgha's addition; Patroni
	// has none). Default 60 s.
	Timeout Duration `yaml:"timeout" json:"timeout,omitempty"`
}
