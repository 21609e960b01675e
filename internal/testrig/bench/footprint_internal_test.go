package bench

import "testing"

// The emulator's log, as the pinned version prints it.
const emulatorLog = `26 Nov 2026 13:08:00,038 [INFO] (rapid) INIT START(type: on-demand, phase: init)
26 Nov 2026 13:08:00,048 [INFO] (rapid) INIT RTDONE(status: success)
26 Nov 2026 13:08:00,048 [INFO] (rapid) INIT REPORT(durationMs: 9.431000)
REPORT RequestId: 282f033c-a627-47ad-8f59-a744fe9bb4f8	Init Duration: 0.02 ms	Duration: 11.73 ms	Billed Duration: 12 ms	Memory Size: 256 MB	Max Memory Used: 256 MB	
REPORT RequestId: fb77ba8b-cc30-46d9-b979-a1ec517c0d90	Duration: 0.96 ms	Billed Duration: 1 ms	Memory Size: 256 MB	Max Memory Used: 256 MB	
`

func TestParseEmulatorLog(t *testing.T) {
	d, ok := parseInitReport(emulatorLog)
	if !ok || d != 9.431 {
		t.Errorf("init: got %v %v, want 9.431", d, ok)
	}
	if _, ok := parseInitReport("START RequestId: x\n"); ok {
		t.Error("init found in a log without INIT REPORT")
	}
	got := parseReportDurations(emulatorLog)
	if len(got) != 2 || got[0] != 11.73 || got[1] != 0.96 {
		t.Errorf("durations: got %v, want [11.73 0.96]", got)
	}
}

func TestMedian(t *testing.T) {
	for _, tc := range []struct {
		in   []float64
		want float64
	}{
		{nil, 0},
		{[]float64{3}, 3},
		{[]float64{5, 1, 3}, 3},
		{[]float64{4, 1, 3, 2}, 2.5},
	} {
		if got := median(tc.in); got != tc.want {
			t.Errorf("median(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
}
