package main

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/kilnlab/kiln/image/artifacts"
	"github.com/kilnlab/kiln/image/build"
	"github.com/kilnlab/kiln/image/secrets"
	"github.com/kilnlab/kiln/plan"
	"github.com/kilnlab/kiln/profiles"
	"github.com/kilnlab/kiln/roles"
)

func runPlan(ctx context.Context, env *cli, args []string) error {
	fs := newFlags(env, "plan [--json] [--secrets DIR] [PROFILE]", "Show, per machine, the disks chosen (by serial/WWN), what is wiped and what\nis kept, the partition table, the role image and the boot chain; then the\nupstream programs (Consul, Vault, k3s) each role image will carry: the version\nthe lab uses, why, and where its file came from (verified against the\nupstream's checksum list, imported, or not fetched yet), from the lab's record.")
	asJSON := fs.Bool("json", false, "print the plan as JSON (what the gate serves the installer)")
	secretsDir := fs.String("secrets", "", "the lab's secrets directory, which holds its artifact record (default $XDG_STATE_HOME/kiln/LAB or ~/.local/state/kiln/LAB)")
	lockPath := fs.String("lock", "", "lockfile (default: the one built into kiln)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	p, pl, err := loadPlan(fs.Args())
	if err != nil {
		return err
	}
	printWarnings(env, p)
	if *asJSON {
		return plan.WriteJSON(env.stdout, pl)
	}
	if err := plan.WriteTable(env.stdout, pl); err != nil {
		return err
	}
	lk, err := loadLock(*lockPath)
	if err != nil {
		return err
	}
	dir := *secretsDir
	if dir == "" {
		if dir, err = secrets.DefaultDir(pl.Lab); err != nil {
			return err
		}
	}
	return writeUpstream(env.stdout, p, &artifacts.Store{Pins: lk.Artifacts, LabDir: dir})
}

// writeUpstream lists what each role image will carry of the upstream
// programs, as the lab's record resolves it (offline).
func writeUpstream(w io.Writer, p *profiles.Profile, st *artifacts.Store) error {
	var rows [][]string
	for _, r := range roles.All() {
		for _, n := range build.RoleNeeds(p, r.Name) {
			version, why, err := st.Version(n.Name, n.Version)
			if err != nil {
				return err
			}
			rows = append(rows, []string{r.Name, n.Name, version, origin(st, n, version), why})
		}
	}
	if len(rows) == 0 {
		return nil
	}
	fmt.Fprintf(w, "\nupstream programs (the lab's record: %s):\n", st.LabDir)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ROLE\tPROGRAM\tVERSION\tORIGIN\tWHY THIS VERSION")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r[0], r[1], r[2], r[3], r[4])
	}
	return tw.Flush()
}

// origin says where the lab's file of n came from, for amd64 (the
// servers' arch).
func origin(st *artifacts.Store, n build.Need, version string) string {
	e, ok, err := st.Recorded(n.Name, version, "amd64", artifacts.RoleBinary)
	switch {
	case err != nil:
		return "? (" + err.Error() + ")"
	case !ok:
		return "not fetched yet (kiln build fetches it, or kiln artifacts import)"
	}
	return fmt.Sprintf("%s, sha256 %s", e.Origin, e.SHA256[:12])
}
