package replication

import (
	"reflect"
	"strings"
	"testing"
)

func TestInitdbArgs(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []any
		want []string
		err  string
	}{
		{"empty", nil, nil, ""},
		{"flag and map", []any{"data-checksums", map[string]any{"encoding": "UTF8", "locale": "C.UTF-8"}, "no-sync"},
			[]string{"--encoding=UTF8", "--locale=C.UTF-8", "--no-sync"}, ""},
		{"string map", []any{map[string]string{"wal-segsize": "32"}}, []string{"--wal-segsize=32"}, ""},
		{"reserved pgdata", []any{map[string]any{"pgdata": "/x"}}, nil, `"pgdata" is set by pgha`},
		{"reserved username", []any{map[string]any{"username": "x"}}, nil, `"username" is set by pgha`},
		{"bad type", []any{42}, nil, "bootstrap.initdb[0] is a int"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := initdbArgs(tc.in)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("want error with %q, got %v", tc.err, err)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func TestLSN(t *testing.T) {
	for _, s := range []string{"0/0", "0/3000028", "16/B374D848", "FFFFFFFF/FFFFFFFF"} {
		l, err := ParseLSN(s)
		if err != nil || l.String() != s {
			t.Errorf("%s: %v %v", s, l, err)
		}
	}
	if l, _ := ParseLSN("1/0"); l != 1<<32 {
		t.Errorf("1/0 = %d", l)
	}
	for _, bad := range []string{"", "12", "x/1", "1/x", "100000000/0"} {
		if _, err := ParseLSN(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

func TestQuoting(t *testing.T) {
	for in, want := range map[string]string{"plain": "plain", "": "''", "a b": "'a b'", `it's\`: `'it\'s\\'`} {
		if got := quoteConn(in); got != want {
			t.Errorf("quoteConn(%q) = %s, want %s", in, got, want)
		}
	}
	if got, _ := quoteParam("host=x password='p'"); got != `'host=x password=''p'''` {
		t.Errorf("quoteParam: %s", got)
	}
	if got := hbaName("all"); got != `"all"` {
		t.Errorf("hbaName(all) = %s", got)
	}
}

func TestSlotName(t *testing.T) {
	for in, want := range map[string]string{"node-1": "node_1", "PG.East": "pg_east", strings.Repeat("a", 70): strings.Repeat("a", 63)} {
		got := SlotName(in)
		if got != want || checkSlotName(got) != nil {
			t.Errorf("SlotName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParseSwitchPoint(t *testing.T) {
	tl, lsn, err := parseSwitchPoint("1\t0/5000060\tno recovery target specified\n\n2\t0/7000A28\tno recovery target specified\n")
	if err != nil || tl != 2 || lsn != LSN(0x7000A28) {
		t.Fatalf("got %d %s %v, want 2 0/7000A28", tl, lsn, err)
	}
	if _, _, err := parseSwitchPoint("\n"); err == nil {
		t.Fatal("an empty history parsed")
	}
	if _, _, err := parseSwitchPoint("x\t0/1\tr\n"); err == nil {
		t.Fatal("a bad timeline parsed")
	}
}
