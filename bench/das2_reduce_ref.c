/* A plain-C das2.2 time-bin reducer: the reference the das2 benchmark compares
 * obsmesh's reducer with (compiled by bench/bench_das2.py with gcc -O2).
 *
 * usage: das2_reduce_ref BIN_SECONDS < IN > OUT
 *
 * Does what das2C's das2_bin_avgsec does for <x>/<y> packets of binary reals:
 * header lengths read with sscanf("%d"), every record's values converted to
 * double, fill tested with das2C's relative tolerance (1e-5), a sum and a
 * count per plane, one record per bin (bins aligned to UNIX 0 as obsmesh's
 * are, x in seconds: t1970 or t2000), written in the input's types. Headers,
 * comments and exceptions are copied through. Written for this benchmark, not
 * taken from das2C.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAXP 100
#define MAXID 100

static int nplanes[MAXID], psize[MAXID][MAXP], pbig[MAXID][MAXP], recsize[MAXID];
static double psum[MAXID][MAXP], pcount[MAXID][MAXP], pfill[MAXID][MAXP];
static long curbin[MAXID];
static int hasbin[MAXID];
static double width;
static FILE *out;

static double get_value(const unsigned char *p, int size, int big)
{
	unsigned char b[8];
	if (big) for (int i = 0; i < size; i++) b[i] = p[size - 1 - i];
	else memcpy(b, p, size);
	if (size == 8) { double d; memcpy(&d, b, 8); return d; }
	float f; memcpy(&f, b, 4); return f;
}

static void put_value(unsigned char *p, double v, int size, int big)
{
	unsigned char b[8];
	if (size == 8) memcpy(b, &v, 8);
	else { float f = (float)v; memcpy(b, &f, 4); }
	if (big) for (int i = 0; i < size; i++) p[i] = b[size - 1 - i];
	else memcpy(p, b, size);
}

static int is_fill(double fill, double v)
{
	return (fill == 0.0 && v == 0.0) || fabs((fill - v) / fill) < 0.00001;
}

static void emit(int id)
{
	unsigned char rec[4 + 8 * MAXP];
	if (!hasbin[id]) return;
	snprintf((char *)rec, 5, ":%02d:", id);
	int at = 4;
	double centre = (curbin[id] + 0.5) * width;
	put_value(rec + at, centre, psize[id][0], pbig[id][0]);
	at += psize[id][0];
	for (int p = 1; p < nplanes[id]; p++) {
		double v = pcount[id][p] > 0 ? psum[id][p] / pcount[id][p] : pfill[id][p];
		put_value(rec + at, v, psize[id][p], pbig[id][p]);
		at += psize[id][p];
		psum[id][p] = 0.0;
		pcount[id][p] = 0.0;
	}
	fwrite(rec, 1, at, out);
	hasbin[id] = 0;
}

/* The planes of a packet header: each type="..." gives a size and byte order,
 * a fill="..." after it (before the next plane) its fill value. */
static int parse_packet(int id, const char *xml)
{
	const char *p = xml;
	int n = 0;
	while ((p = strstr(p, "type=\"")) != NULL && n < MAXP) {
		p += 6;
		if (strncmp(p, "sun_real8", 9) == 0) { psize[id][n] = 8; pbig[id][n] = 1; }
		else if (strncmp(p, "sun_real4", 9) == 0) { psize[id][n] = 4; pbig[id][n] = 1; }
		else if (strncmp(p, "little_endian_real8", 19) == 0) { psize[id][n] = 8; pbig[id][n] = 0; }
		else if (strncmp(p, "little_endian_real4", 19) == 0) { psize[id][n] = 4; pbig[id][n] = 0; }
		else return -1;
		pfill[id][n] = -1e31;
		const char *next = strstr(p, "type=\"");
		const char *f = strstr(p, "fill=\"");
		if (f && (!next || f < next)) pfill[id][n] = atof(f + 6);
		n++;
	}
	nplanes[id] = n;
	recsize[id] = 4;
	for (int i = 0; i < n; i++) recsize[id] += psize[id][i];
	hasbin[id] = 0;
	return n > 1 ? 0 : -1;
}

int main(int argc, char **argv)
{
	if (argc != 2 || (width = atof(argv[1])) <= 0) {
		fprintf(stderr, "usage: das2_reduce_ref BIN_SECONDS < IN > OUT\n");
		return 2;
	}
	out = stdout;
	size_t cap = 1 << 20, len = 0, got;
	unsigned char *buf = malloc(cap);
	while ((got = fread(buf + len, 1, cap - len, stdin)) > 0) {
		len += got;
		if (len == cap) buf = realloc(buf, cap *= 2);
	}
	size_t pos = 0;
	while (pos + 4 <= len) {
		unsigned char *tag = buf + pos;
		if (tag[0] == '[') {
			int length = 0;
			char digits[7] = {0};
			if (pos + 10 > len) return 1;
			memcpy(digits, tag + 4, 6);
			if (sscanf(digits, "%d", &length) != 1 || length < 0 || pos + 10 + length > len) return 1;
			if (tag[1] >= '0' && tag[1] <= '9') {
				int id = (tag[1] - '0') * 10 + (tag[2] - '0');
				if (id > 0) {
					char *xml = malloc(length + 1);
					memcpy(xml, tag + 10, length);
					xml[length] = 0;
					emit(id);
					if (parse_packet(id, xml) != 0) { fprintf(stderr, "unsupported packet\n"); return 1; }
					free(xml);
				}
			}
			fwrite(tag, 1, 10 + length, out);
			pos += 10 + length;
		} else if (tag[0] == ':') {
			int id = (tag[1] - '0') * 10 + (tag[2] - '0');
			if (id <= 0 || id >= MAXID || !nplanes[id] || pos + recsize[id] > len) return 1;
			const unsigned char *r = tag + 4;
			double x = get_value(r, psize[id][0], pbig[id][0]);
			long bin = (long)floor(x / width);
			if (hasbin[id] && bin != curbin[id]) emit(id);
			curbin[id] = bin;
			hasbin[id] = 1;
			r += psize[id][0];
			for (int p = 1; p < nplanes[id]; p++) {
				double v = get_value(r, psize[id][p], pbig[id][p]);
				if (!is_fill(pfill[id][p], v)) {
					psum[id][p] += v;
					pcount[id][p] += 1;
				}
				r += psize[id][p];
			}
			pos += recsize[id];
		} else {
			fprintf(stderr, "bad packet tag at byte %zu\n", pos);
			return 1;
		}
	}
	for (int id = 1; id < MAXID; id++) emit(id);
	free(buf);
	return 0;
}
