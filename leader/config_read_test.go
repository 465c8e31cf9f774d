package leader_test

import (
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/pgha/pgha/config"
	"github.com/pgha/pgha/internal/testkit"
	"github.com/pgha/pgha/leader"
)

// TestStoreRefusesBadConfig: a config key that does not validate (put
// there behind pgha's back) is refused: the view keeps the last good
// config (with the bad key's revision, so a compare-and-swap can repair
// it), the problem is logged once, not every cycle, and a fixed key is
// taken again.
func TestStoreRefusesBadConfig(t *testing.T) {
	cli := startEtcd(t)
	ctx := testkit.Ctx(t, time.Minute)
	var logs testkit.Buffer
	s := leader.NewStore(cli, "/service/", "cfg", "a", slog.New(slog.NewTextHandler(&logs, nil)))
	key := leader.Prefix("/service/", "cfg") + "config"

	good := config.DefaultDynamic()
	good.TTL = config.Duration(20 * time.Second)
	good.PostgreSQL.Parameters = map[string]any{"work_mem": "8MB"}
	if err := leader.CASConfig(ctx, cli, "/service/", "cfg", good, 0); err != nil {
		t.Fatal(err)
	}
	snap, err := s.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if snap.Config.TTL != good.TTL || snap.Config.PostgreSQL.Parameters["work_mem"] != "8MB" {
		t.Fatalf("good config read as %+v", snap.Config)
	}

	for _, bad := range []struct{ name, value, problem string }{
		{"ttl relation", `{"ttl":5,"loop_wait":1,"retry_timeout":3,"postgresql":{"parameters":{"work_mem":"16MB"}}}`, "ttl: 5s is too small"},
		{"parameter name", `{"ttl":20,"postgresql":{"parameters":{"work_mem = '1'\nport":"5"}}}`, "is not a setting name"},
		{"not JSON", `{"ttl":`, "not valid JSON"},
	} {
		t.Run(bad.name, func(t *testing.T) {
			resp, err := cli.Put(ctx, key, bad.value)
			if err != nil {
				t.Fatal(err)
			}
			for range 3 { // three cycles
				snap, err := s.Read(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if snap.Config.TTL != good.TTL || snap.Config.PostgreSQL.Parameters["work_mem"] != "8MB" {
					t.Fatalf("view took the refused config: %+v", snap.Config)
				}
				if snap.ConfigRevision != resp.Header.Revision {
					t.Fatalf("config revision %d, want the bad key's %d", snap.ConfigRevision, resp.Header.Revision)
				}
			}
			if n := strings.Count(logs.String(), "refusing the dynamic config in etcd"); n != 1 {
				t.Fatalf("logged the refusal %d times, want once:\n%s", n, logs.String())
			}
			if strings.Count(logs.String(), bad.problem) != 1 {
				t.Fatalf("log does not name the problem %q:\n%s", bad.problem, logs.String())
			}
			// Repair it by compare-and-swap against the bad revision.
			fixed := good
			if err := leader.CASConfig(ctx, cli, "/service/", "cfg", fixed, resp.Header.Revision); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Read(ctx); err != nil {
				t.Fatal(err)
			}
			if n := strings.Count(logs.String(), "the dynamic config in etcd is valid again"); n != 1 {
				t.Fatalf("logged %d recoveries, want 1:\n%s", n, logs.String())
			}
			logs.Reset()
		})
	}

	// pghactl's read shows what is stored, so that it can be fixed.
	if _, err := cli.Put(ctx, key, `{"ttl":5,"loop_wait":1,"retry_timeout":3}`); err != nil {
		t.Fatal(err)
	}
	v, err := leader.ReadView(ctx, cli, "/service/", "cfg")
	if err != nil {
		t.Fatal(err)
	}
	if v.Config.TTL.D() != 5*time.Second {
		t.Fatalf("ReadView config ttl %s, want the stored 5s", v.Config.TTL.D())
	}
}

// TestCASConfigRefusesInvalid: writers are refused up front with the
// message Validate gives.
func TestCASConfigRefusesInvalid(t *testing.T) {
	cli := startEtcd(t)
	ctx := testkit.Ctx(t, time.Minute)
	bad := config.DefaultDynamic()
	bad.TTL = config.Duration(4 * time.Second)
	err := leader.CASConfig(ctx, cli, "/service/", "cfg", bad, 0)
	want := bad.Validate()
	if err == nil || want == nil || !strings.Contains(err.Error(), want.Error()) {
		t.Fatalf("CASConfig: %v, want it to carry %v", err, want)
	}
	if errors.Is(err, leader.ErrConflict) {
		t.Fatal("an invalid config is not a conflict")
	}
	resp, err := cli.Get(ctx, leader.Prefix("/service/", "cfg")+"config")
	if err != nil || len(resp.Kvs) != 0 {
		t.Fatalf("config key written: %v %v", resp, err)
	}
}
