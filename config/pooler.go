package config

// Pooler configures the embedded PgBouncer-style pooler. Key names follow
// PgBouncer's pgbouncer.ini so that people's settings carry over.
type Pooler struct {
	// Enabled starts the pooler with the daemon.
	Enabled bool `yaml:"enabled" json:"enabled"`
	// Listen is the read-write port (writes go to the current primary).
	Listen string `yaml:"listen" json:"listen"`
	// ReadOnlyListen load-balances over healthy replicas; empty disables it.
	ReadOnlyListen string `yaml:"read_only_listen" json:"read_only_listen"`
	// PoolMode is session, transaction or statement.
	PoolMode        string `yaml:"pool_mode" json:"pool_mode"`
	DefaultPoolSize int    `yaml:"default_pool_size" json:"default_pool_size"`
	MaxClientConn   int    `yaml:"max_client_conn" json:"max_client_conn"`
}

// DefaultPooler returns PgBouncer's defaults where it has them.
func DefaultPooler() Pooler {
	return Pooler{
		Enabled:         true,
		Listen:          "127.0.0.1:6432",
		ReadOnlyListen:  "",
		PoolMode:        "transaction",
		DefaultPoolSize: 20,
		MaxClientConn:   100,
	}
}

func (c *Pooler) validate(p *problems, path string) {
	if !c.Enabled {
		return
	}
	checkHostPort(p, path+".listen", c.Listen, true)
	if c.ReadOnlyListen != "" {
		checkHostPort(p, path+".read_only_listen", c.ReadOnlyListen, true)
	}
	switch c.PoolMode {
	case "session", "transaction", "statement":
	default:
		p.add(path+".pool_mode", "%q is not session, transaction or statement", c.PoolMode)
	}
	if c.DefaultPoolSize < 1 {
		p.add(path+".default_pool_size", "%d: use at least 1", c.DefaultPoolSize)
	}
	if c.MaxClientConn < 1 {
		p.add(path+".max_client_conn", "%d: use at least 1", c.MaxClientConn)
	}
}
