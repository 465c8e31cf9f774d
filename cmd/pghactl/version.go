package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/pgha/pgha/internal/version"
)

func versionCommand() *cli.Command {
	return &cli.Command{
		Name:      "version",
		Usage:     "print pghactl's version, and with a cluster name each member's pgha and PostgreSQL versions",
		ArgsUsage: "[CLUSTER [MEMBER...]]",
		Action: func(c *cli.Context) error {
			fmt.Fprintf(c.App.Writer, "pghactl version %s\n", version.Version)
			if c.NArg() == 0 {
				return nil // patronictl prints members only for a named cluster
			}
			return withArgs(clusterMembers, printVersions)(c)
		},
	}
}

// printVersions is patronictl version CLUSTER: one line per member from
// its /patroni document.
func printVersions(ctx context.Context, x *ctl, c *cli.Context) error {
	v, err := x.view(ctx)
	if err != nil {
		return err
	}
	want := map[string]bool{}
	for _, n := range x.args {
		want[n] = true
	}
	fmt.Fprintln(x.out)
	for _, m := range v.Members {
		if m.APIURL == "" || (len(want) > 0 && !want[m.Name]) {
			continue
		}
		code, body, err := x.request(ctx, m, "GET", "/patroni", "", 5*time.Second)
		if err == nil && code != http.StatusOK {
			err = fmt.Errorf("status code %d", code)
		}
		var doc struct {
			Patroni struct {
				Version string `json:"version"`
			} `json:"patroni"`
			ServerVersion int `json:"server_version"`
		}
		if err == nil {
			err = json.Unmarshal([]byte(body), &doc)
		}
		if err != nil {
			fmt.Fprintf(x.out, "%s: failed to get version: %v\n", m.Name, err)
			continue
		}
		pg := ""
		if doc.ServerVersion > 0 {
			pg = " PostgreSQL " + pgVersion(doc.ServerVersion)
		}
		fmt.Fprintf(x.out, "%s: pgha %s%s\n", m.Name, doc.Patroni.Version, pg)
	}
	return nil
}

// pgVersion is patronictl's format_pg_version: 90624 -> 9.6.24,
// 150004 -> 15.4.
func pgVersion(n int) string {
	if n < 100000 {
		return fmt.Sprintf("%d.%d.%d", n/10000, n/100%100, n%100)
	}
	return fmt.Sprintf("%d.%d", n/10000, n%100)
}
