// compose-check loads Compose files with compose-go, the loader `docker compose` uses,
// and prints the resolved model, the way `docker compose config` does, without
// needing a Docker engine or the compose plugin:
//
//	compose-check FILE...
//
// It interpolates variables from the environment, validates against the Compose
// Specification and checks references (services, volumes, networks), exiting 1 with
// compose-go's message on the first problem. Built by scripts/ensure-deploy-tools.
package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/compose-spec/compose-go/v2/cli"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: compose-check FILE...")
		os.Exit(2)
	}
	dir := filepath.Dir(os.Args[1])
	opts, err := cli.NewProjectOptions(
		os.Args[1:],
		cli.WithWorkingDirectory(dir),
		cli.WithOsEnv,
		cli.WithDotEnv,
	)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	project, err := opts.LoadProject(context.Background())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	out, err := project.MarshalYAML()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Stdout.Write(out)
}
