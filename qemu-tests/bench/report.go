package bench

import (
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/kilnlab/kiln/qemu-tests/lab"
)

// Print writes the report as a small table for people: each side's
// figures and Debian's as a multiple of the gate's.
func Print(w io.Writer, r *Report) {
	same := "the gate image's own vmlinuz"
	if !r.SameKernel {
		same = "the pinned .deb's vmlinuz (NOT byte-identical to the gate image's)"
	}
	fmt.Fprintf(w, "kiln bench: gate appliance vs Debian arm64 systemd, kernel %s (Debian VM boots %s)\n", r.Kernel, same)
	fmt.Fprintf(w, "QEMU virt cortex-a72 (%s), %d vCPU, %d MiB, memory read after %s idle\n", r.Accel.For(lab.ARM64), r.CPUs, r.MemoryMiB, r.Settle)
	fmt.Fprintf(w, "accelerator chosen for the run: %s\n\n", r.Accel)
	tw := tabwriter.NewWriter(w, 0, 0, 3, ' ', 0)
	fmt.Fprintln(tw, "\tgate (kiln)\tDebian systemd\tDebian/gate\t")
	g, d := r.Gate, r.Debian
	row(tw, "kernel start to ready (s)", secs(g.Ready, g), secs(d.Ready, d), ratio(g.Ready, d.Ready, g, d))
	row(tw, "QEMU start to ready (s)", secs(g.Wall.Seconds(), g), secs(d.Wall.Seconds(), d), ratio(g.Wall.Seconds(), d.Wall.Seconds(), g, d))
	row(tw, "memory used (MiB)", mib(g.Used, g), mib(d.Used, d), ratio(float64(g.Used), float64(d.Used), g, d))
	row(tw, "  of which kiln RSS (MiB)", mib(g.RSS, g), "-", "")
	row(tw, "memory total (MiB)", mib(g.Total, g), mib(d.Total, d), "")
	tw.Flush()
	fmt.Fprintln(w, "\nready: KILN-GATE-SERVING boot=<s> (gate), multi-user.target reached (Debian; uptime).")
	fmt.Fprintln(w, "used: MemTotal - MemAvailable (gate: GET /status.json; Debian: /proc/meminfo).")
	for _, s := range []Result{g, d} {
		if s.Err != nil {
			fmt.Fprintf(w, "\n%s FAILED: %v\n", s.Name, s.Err)
		}
	}
}

func row(w io.Writer, name string, cells ...string) {
	fmt.Fprintf(w, "%s\t", name)
	for _, c := range cells {
		fmt.Fprintf(w, "%s\t", c)
	}
	fmt.Fprintln(w)
}

func secs(v float64, r Result) string {
	if r.Err != nil && v == 0 {
		return "failed"
	}
	return fmt.Sprintf("%.1f", v)
}

func mib(v int64, r Result) string {
	if r.Err != nil && v == 0 {
		return "failed"
	}
	return fmt.Sprintf("%.1f", float64(v)/(1<<20))
}

func ratio(gate, debian float64, g, d Result) string {
	if gate <= 0 || debian <= 0 || g.Err != nil || d.Err != nil {
		return "-"
	}
	return fmt.Sprintf("%.1fx", debian/gate)
}
