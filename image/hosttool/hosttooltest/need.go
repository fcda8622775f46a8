// Package hosttooltest owns one test policy for the build host's tools: a
// test whose Debian tool is missing skips on a developer's machine, but
// fails under CI=true, where a missing tool means a broken set-up rather
// than a reason to check less.
package hosttooltest

import (
	"os"
	"testing"

	"github.com/kilnlab/kiln/image/hosttool"
)

// Need skips (or, under CI=true, fails) t unless every named tool is on
// PATH; the message names the Debian package to install.
func Need(t testing.TB, names ...string) {
	t.Helper()
	if err := hosttool.Check(names...); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
}
