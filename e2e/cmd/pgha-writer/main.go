// Command pgha-writer is the client side of scripts/bench-failover.sh: it
// writes one row with a unique id every -every through one connection
// string (a node's pooler, HAProxy, or a multi-host DSN with
// target_session_attrs=read-write), reconnecting after errors, and prints
// one line per attempt: "<send_ms> <end_ms> ok <id>" or "<send_ms> <end_ms>
// err <message>" (Unix milliseconds). It is a benchmark tool, not a test.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "pgha-writer:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("pgha-writer", flag.ContinueOnError)
	dsn := fs.String("dsn", "", "connection string")
	table := fs.String("table", "bench_writes", "table (id bigint PRIMARY KEY, ...) to insert into; created if missing")
	every := fs.Duration("every", 20*time.Millisecond, "pause between writes")
	timeout := fs.Duration("timeout", 5*time.Second, "bound on one write (and one connect)")
	limit := fs.Duration("for", time.Hour, "stop after this long")
	prefix := fs.Int64("id-base", time.Now().UnixMilli()*1000, "first id (ids must be unique across writers)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *dsn == "" {
		return fmt.Errorf("-dsn is required")
	}
	ctx, cancel := context.WithTimeout(ctx, *limit)
	defer cancel()
	var c *pgx.Conn
	defer func() {
		if c != nil {
			c.Close(context.Background())
		}
	}()
	id := *prefix
	created := false
	for ctx.Err() == nil {
		start := time.Now()
		err := func() error {
			wctx, wcancel := context.WithTimeout(ctx, *timeout)
			defer wcancel()
			if c == nil {
				var err error
				if c, err = pgx.Connect(wctx, *dsn); err != nil {
					c = nil
					return err
				}
			}
			if !created {
				if _, err := c.Exec(wctx, "CREATE TABLE IF NOT EXISTS "+pgx.Identifier{*table}.Sanitize()+" (id bigint PRIMARY KEY, at timestamptz DEFAULT now())"); err != nil {
					return err
				}
				created = true
			}
			_, err := c.Exec(wctx, "INSERT INTO "+pgx.Identifier{*table}.Sanitize()+" (id) VALUES ($1)", id)
			return err
		}()
		end := time.Now()
		if err != nil && ctx.Err() != nil {
			break // stopped during an attempt: not a failed write
		}
		if err != nil {
			if c != nil && c.IsClosed() {
				c = nil
			}
			fmt.Printf("%d %d err %s\n", start.UnixMilli(), end.UnixMilli(), strings.ReplaceAll(err.Error(), "\n", " "))
			var pgErr *pgconn.PgError
			if c != nil && errors.As(err, &pgErr) && pgErr.Code == "25006" {
				// read_only_sql_transaction: this connection reached a
				// replica (a demoted primary); a client that needs the
				// primary connects again.
				c.Close(context.Background())
				c = nil
			}
			if c != nil {
				// A failed statement leaves the connection usable; a broken
				// one is replaced at the next attempt.
				if !c.IsClosed() && ctx.Err() == nil {
					pctx, pcancel := context.WithTimeout(ctx, time.Second)
					if c.Ping(pctx) != nil {
						c.Close(context.Background())
						c = nil
					}
					pcancel()
				}
			}
		} else {
			fmt.Printf("%d %d ok %d\n", start.UnixMilli(), end.UnixMilli(), id)
		}
		// A new id for every attempt: a failed one may have committed all
		// the same (its reply lost with the connection), and retrying its
		// id would then fail forever on the primary key.
		id++
		select {
		case <-ctx.Done():
		case <-time.After(*every):
		}
	}
	return nil
}
