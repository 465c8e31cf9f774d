package demo

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pgha/pgha/config"
)

// The configs the demo writes must load and validate, with the ports the
// issue fixes: Postgres B+i, REST B+100+i, pooler B+200+i and B+300+i.
func TestDemoConfigsAreValid(t *testing.T) {
	dir := t.TempDir()
	base := 15430
	for i := 1; i <= 3; i++ {
		if err := writeConfig(dir, i, base, "http://127.0.0.1:15830"); err != nil {
			t.Fatal(err)
		}
		c, err := config.Load(filepath.Join(dir, nodeName(i)+".yml"))
		if err != nil {
			t.Fatalf("node%d config: %v", i, err)
		}
		want := map[string]string{
			"name":                    nodeName(i),
			"postgresql.listen":       fmt.Sprintf("127.0.0.1:%d", base+i),
			"restapi.listen":          fmt.Sprintf("127.0.0.1:%d", base+100+i),
			"pooler.listen":           fmt.Sprintf("127.0.0.1:%d", base+200+i),
			"pooler.read_only_listen": fmt.Sprintf("127.0.0.1:%d", base+300+i),
			"superuser password":      Password,
			"etcd":                    "http://127.0.0.1:15830",
			"data_dir under the node": filepath.Join(dir, nodeName(i), "data"),
			"ttl":                     "10s",
		}
		got := map[string]string{
			"name":                    c.Name,
			"postgresql.listen":       c.PostgreSQL.Listen,
			"restapi.listen":          c.RESTAPI.Listen,
			"pooler.listen":           c.Pooler.Listen,
			"pooler.read_only_listen": c.Pooler.ReadOnlyListen,
			"superuser password":      c.PostgreSQL.Authentication.Superuser.Password,
			"etcd":                    strings.Join(c.Etcd.Endpoints, ","),
			"data_dir under the node": c.PostgreSQL.DataDir,
			"ttl":                     c.Bootstrap.DCS.TTL.D().String(),
		}
		for k, w := range want {
			if got[k] != w {
				t.Errorf("node%d %s = %q, want %q", i, k, got[k], w)
			}
		}
	}
}

func TestOptionsValidate(t *testing.T) {
	rows := []struct {
		o   Options
		bad string
	}{
		{Options{}, "--dir"},
		{Options{Dir: "x", Nodes: 12}, "--nodes"},
		{Options{Dir: "x", BasePort: 80}, "--base-port"},
		{Options{Dir: "x", BasePort: 65300}, "--base-port"},
		{Options{Dir: "x"}, ""},
	}
	for _, r := range rows {
		err := r.o.Validate()
		if r.bad == "" {
			if err != nil || r.o.Nodes != 3 || r.o.BasePort != 15430 {
				t.Errorf("%+v: err %v, defaults nodes %d base %d", r.o, err, r.o.Nodes, r.o.BasePort)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), r.bad) {
			t.Errorf("%+v: err = %v, want it to name %s", r.o, err, r.bad)
		}
	}
}
