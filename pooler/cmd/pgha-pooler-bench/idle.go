package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// idle opens n logged-in clients, runs one query on each, prints "ready"
// and holds them until ctx ends (the script measures RSS meanwhile).
func idle(ctx context.Context, fs *flag.FlagSet, args []string) error {
	dsn := fs.String("dsn", "", "connection string (through the pooler)")
	n := fs.Int("n", 10000, "idle clients to open")
	par := fs.Int("parallel", 32, "concurrent logins")
	query := fs.Bool("query", true, "run one query on each client before idling")
	if err := fs.Parse(args); err != nil {
		return err
	}
	conns := make([]*pgconn.PgConn, *n)
	var mu sync.Mutex
	var firstErr error
	sem := make(chan struct{}, *par)
	var wg sync.WaitGroup
	for i := range conns {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			c, err := pgconn.Connect(cctx, *dsn)
			if err == nil && *query {
				_, err = c.Exec(cctx, "SELECT 1").ReadAll()
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil && firstErr == nil {
				firstErr = fmt.Errorf("client %d: %w", i, err)
			}
			conns[i] = c
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	fmt.Fprintln(os.Stdout, "ready")
	<-ctx.Done()
	for _, c := range conns {
		if c != nil {
			c.Close(context.Background())
		}
	}
	return nil
}
