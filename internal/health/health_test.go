package health

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestScoreAtEveryBoundary(t *testing.T) {
	const mib = 1 << 20
	for _, tc := range []struct {
		name            string
		cpu             float64
		rss, used, have int64
		want            int
	}{
		{"idle and fresh", 0, 0, 0, 1000, 100},
		{"cpu 60 is fine", 60, 0, 0, 1000, 100},
		{"cpu above 60", 60.1, 0, 0, 1000, 85},
		{"cpu 80 is still elevated", 80, 0, 0, 1000, 85},
		{"cpu above 80", 80.1, 0, 0, 1000, 70},
		{"512 MiB is fine", 0, 512 * mib, 0, 1000, 100},
		{"above 512 MiB", 0, 512*mib + 1, 0, 1000, 85},
		{"1 GiB is still elevated", 0, 1024 * mib, 0, 1000, 85},
		{"above 1 GiB", 0, 1024*mib + 1, 0, 1000, 70},
		{"25% left is fine", 0, 0, 750, 1000, 100},
		{"under 25% left", 0, 0, 751, 1000, 80},
		{"10% left is still low", 0, 0, 900, 1000, 80},
		{"under 10% left", 0, 0, 901, 1000, 60},
		{"over budget", 0, 0, 5000, 1000, 60},
		{"everything at once", 95, 2048 * mib, 999, 1000, 0},
		{"no allocation known", 0, 0, 50, 0, 100},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, Score(tc.cpu, tc.rss, tc.used, tc.have))
		})
	}
}

func TestBands(t *testing.T) {
	for _, tc := range []struct {
		score int
		want  string
	}{{100, "healthy"}, {80, "healthy"}, {79, "degraded"}, {50, "degraded"}, {49, "unhealthy"}, {0, "unhealthy"}} {
		require.Equal(t, tc.want, Band(tc.score), "score %d", tc.score)
	}
}

func TestResourceBandsAtEveryBoundary(t *testing.T) {
	for _, tc := range []struct {
		cpu  float64
		want int
	}{{0, 0}, {60, 0}, {60.001, 1}, {80, 1}, {80.001, 2}, {400, 2}} {
		require.Equal(t, tc.want, CPUBand(tc.cpu), "cpu %v%%", tc.cpu)
	}
	const mib = 1 << 20
	for _, tc := range []struct {
		rss  int64
		want int
	}{{0, 0}, {512 * mib, 0}, {512*mib + 1, 1}, {1024 * mib, 1}, {1024*mib + 1, 2}, {64 << 30, 2}} {
		require.Equal(t, tc.want, MemoryBand(tc.rss), "rss %d", tc.rss)
	}
}

func TestTokenBandsFollowTheScore(t *testing.T) {
	for _, tc := range []struct {
		used, allocated int64
		want            int
	}{{0, 0, 0}, {5000, 0, 0}, {0, 1000, 0}, {750, 1000, 0}, {751, 1000, 1}, {900, 1000, 1}, {901, 1000, 2}, {999, 1000, 2}, {1000, 1000, 3}, {4000, 1000, 3}} {
		require.Equal(t, tc.want, TokenBand(tc.used, tc.allocated), "%d of %d", tc.used, tc.allocated)
		if tc.allocated > 0 && tc.want < 3 {
			// The band moves exactly where the score's token term does.
			require.Equal(t, []int{100, 80, 60}[tc.want], Score(0, 0, tc.used, tc.allocated), "%d of %d", tc.used, tc.allocated)
		}
	}
}
