package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pgha/pgha/config"
	"github.com/pgha/pgha/internal/pgtest"
	"github.com/pgha/pgha/internal/testcert"
	"github.com/pgha/pgha/leader"
)

// TestEditConfigRefusesInvalid: edit-config refuses a config the daemon
// would refuse, with the message config's Validate gives.
func TestEditConfigRefusesInvalid(t *testing.T) {
	tc := newTestCluster(t)
	bad := config.DefaultDynamic()
	bad.TTL = config.Duration(5 * time.Second)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-s", "ttl=5"}, bad.Validate().Error()},
		{[]string{"-p", "work mem=8MB"}, `"work mem" is not a setting name`},
		{[]string{"-p", "include_dir=/etc"}, `"include_dir" is a directive that reads other files`},
		{[]string{"-p", `log_line_prefix="a\nb"`}, "value of log_line_prefix contains the control character U+000A"},
		{[]string{"-p", "work_mem={a: 1}"}, "value is a mapping"},
	} {
		_, err := tc.ctl(t, "", append(append([]string{"edit-config"}, c.args...), "--force")...)
		if err == nil || !strings.Contains(err.Error(), "refusing the change") || !strings.Contains(err.Error(), c.want) {
			t.Errorf("edit-config %v: err %v, want it refused with %q", c.args, err, c.want)
		}
	}
}

// TestConfigFileEtcdTLS: with -c, pghactl reaches a TLS-only etcd with
// the file's etcd.cacert/cert/key and a host:port endpoint, as the
// daemon does (leader.NewClient).
func TestConfigFileEtcdTLS(t *testing.T) {
	cert, key, _ := testcert.Write(t)
	urls := pgtest.StartEtcdWith(t, pgtest.EtcdOptions{CertFile: cert, KeyFile: key, CAFile: cert})
	hostPort := strings.TrimPrefix(urls[0], "https://")
	e := config.Etcd{Endpoints: []string{hostPort}, CACert: cert, Cert: cert, Key: key}
	cli, err := leader.NewClient(e)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := leader.CASConfig(ctx, cli, "/service/", "tls", config.DefaultDynamic(), 0); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "node1.yml")
	yml := "scope: tls\nname: node1\netcd:\n  endpoints: [" + hostPort + "]\n  cacert: " + cert + "\n  cert: " + cert + "\n  key: " + key + "\n" +
		"postgresql:\n  data_dir: " + filepath.Join(dir, "data") + "\n"
	if err := os.WriteFile(path, []byte(yml), 0o600); err != nil {
		t.Fatal(err)
	}
	app := newApp()
	var out bytes.Buffer
	app.Writer = &out
	if err := app.RunContext(ctx, []string{"pghactl", "-c", path, "show-config"}); err != nil || !strings.Contains(out.String(), "ttl: 10\n") {
		t.Fatalf("show-config over TLS: %v\n%s", err, out.String())
	}
}
