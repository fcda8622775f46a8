package netboot

import (
	"fmt"
	"io"
)

// Print writes the report as Markdown tables (BENCHMARKS.md takes them as
// they are): per figure, each server's median MiB/s over the rounds, the
// spread, and kiln's median as a multiple of that server's.
func Print(w io.Writer, r *Report, rounds int) {
	for _, f := range r.Figures {
		fmt.Fprintf(w, "\n%s (%d rounds)\n\n", f.Name, rounds)
		fmt.Fprintln(w, "| server | median MiB/s | min–max MiB/s | kiln / server |")
		fmt.Fprintln(w, "| --- | ---: | ---: | ---: |")
		kiln, _, _ := stats(f.MiBps["kiln"])
		for _, s := range f.Servers {
			med, lo, hi := stats(f.MiBps[s])
			ratio := "-"
			if kiln > 0 && med > 0 && s != "kiln" {
				ratio = fmt.Sprintf("%.2f×", kiln/med)
			}
			fmt.Fprintf(w, "| %s | %.1f | %.1f–%.1f | %s |\n", s, med, lo, hi, ratio)
		}
		for _, n := range f.Notes {
			fmt.Fprintf(w, "\n- %s", n)
		}
		if len(f.Notes) > 0 {
			fmt.Fprintln(w)
		}
	}
	if r.KilnRSSPeak > 0 {
		fmt.Fprintf(w, "\nkiln's HTTP server RSS: %.1f MiB idle, %.1f MiB at its peak while serving the HTTP figures\n",
			float64(r.KilnRSSIdle)/(1<<20), float64(r.KilnRSSPeak)/(1<<20))
	}
}
