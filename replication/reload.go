package replication

import (
	"reflect"
	"slices"

	"github.com/pgha/pgha/config"
)

// SetNodeConfig takes a reloaded node file's postgresql section: its
// parameters and pg_hba apply at the next configuration write (ApplyParameters),
// and the keys that only a daemon restart can change (listen, data_dir,
// bin_dir, os_user, authentication, pg_ctl_timeout) are returned, left as
// they were.
func (in *Instance) SetNodeConfig(cfg config.PostgreSQL) ([]string, error) {
	local, err := localParameters(cfg.Parameters)
	if err != nil {
		return nil, err
	}
	in.confMu.Lock()
	defer in.confMu.Unlock()
	var restart []string
	old := in.cfg
	for _, c := range []struct {
		key     string
		changed bool
	}{
		{"postgresql.listen", old.Listen != cfg.Listen},
		{"postgresql.connect_address", old.ConnectAddress != cfg.ConnectAddress && cfg.ConnectAddress != ""},
		{"postgresql.data_dir", old.DataDir != cfg.DataDir},
		{"postgresql.bin_dir", old.BinDir != cfg.BinDir && cfg.BinDir != ""},
		{"postgresql.os_user", old.OSUser != cfg.OSUser && cfg.OSUser != ""},
		{"postgresql.authentication", !reflect.DeepEqual(old.Authentication, cfg.Authentication)},
		{"postgresql.pg_ctl_timeout", old.PgCtlTimeout != cfg.PgCtlTimeout},
	} {
		if c.changed {
			restart = append(restart, c.key)
		}
	}
	in.local = local
	in.cfg.Parameters = cfg.Parameters
	in.cfg.PgHBA = slices.Clone(cfg.PgHBA)
	return restart, nil
}
