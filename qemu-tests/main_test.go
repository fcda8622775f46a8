package qemutests

import (
	"context"
	"flag"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/kilnlab/kiln/qemu-tests/lab"
)

// accel is the accelerator of every amd64 VM this test binary boots,
// chosen once by TestMain from $KILN_ACCEL (auto when unset): with auto, a
// KVM is used only if it boots SeaBIOS (lab.AccelProbe).
var accel lab.Accel

func TestMain(m *testing.M) {
	flag.Parse()
	if !testing.Short() {
		mode, err := lab.AccelModeFromEnv()
		if err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			accel, err = lab.ChooseAccel(ctx, mode)
			cancel()
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "qemu-tests:", err)
			os.Exit(2)
		}
		fmt.Printf("qemu-tests: accelerator %s\n", accel)
	}
	os.Exit(m.Run())
}
