package main

import (
	"context"

	"github.com/kilnlab/kiln/profiles"
)

func runSchema(_ context.Context, env *cli, args []string) error {
	fs := newFlags(env, "schema",
		"Print the profile's JSON Schema (draft 2020-12), generated from kiln's profile\ntypes with their descriptions. Editors with the YAML language server complete\nand check a profile that starts with\n  # yaml-language-server: $schema=profile.schema.json\nafter `kiln schema > profile.schema.json` beside it. The schema checks the\nprofile's shape; kiln validate checks everything.")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usagef("schema takes no arguments")
	}
	_, err := env.stdout.Write(profiles.JSONSchema())
	return err
}
