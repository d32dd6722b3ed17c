// What a reader's browser makes of a page opened from disk, as JSON on stdout: Debian's
// Chromium, driven by playwright-core, loads the file with a stock viewport and reports every
// request besides the page itself, every console error or warning and uncaught page error,
// each <svg> chart's title and the points of its longest drawn line, and a full-page
// screenshot's share of non-white pixels and its distinct colours.
//
//   node check_page.js PAGE.html SHOT.png
const { chromium } = require('playwright-core');
const { PNG } = require('pngjs');
const fs = require('fs');
const path = require('path');

async function main() {
  const [file, shot] = process.argv.slice(2);
  const url = 'file://' + path.resolve(file);
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu'],
  });
  try {
    const page = await browser.newPage({ viewport: { width: 1000, height: 800 } });
    const requests = [];
    const problems = [];
    page.on('request', (r) => { if (r.url() !== url) requests.push(r.url()); });
    page.on('console', (m) => {
      if (m.type() === 'error' || m.type() === 'warning') problems.push(m.text());
    });
    page.on('pageerror', (e) => problems.push(String(e)));
    await page.goto(url, { waitUntil: 'load' });
    const charts = await page.$$eval('svg', (svgs) => svgs.map((svg) => {
      const title = (svg.querySelector('text') || { textContent: '' }).textContent.trim();
      // Data lines are drawn 2 px wide; the axes, ticks and grid 1 px.
      const lines = [...svg.querySelectorAll('polyline[stroke-width="2"]')];
      const points = Math.max(0, ...lines.map((l) => l.points.numberOfItems));
      return { title, points };
    }));
    await page.screenshot({ path: shot, fullPage: true });
    const png = PNG.sync.read(fs.readFileSync(shot));
    let inked = 0;
    const colours = new Set();
    for (let i = 0; i < png.data.length; i += 4) {
      const [r, g, b] = [png.data[i], png.data[i + 1], png.data[i + 2]];
      if (r < 250 || g < 250 || b < 250) inked += 1;
      colours.add((r << 16) | (g << 8) | b);
    }
    const pixels = png.width * png.height;
    console.log(JSON.stringify({
      requests, problems, charts,
      screenshot: { width: png.width, height: png.height, inked: inked / pixels, colours: colours.size },
    }));
  } finally {
    await browser.close();
  }
}

main().catch((e) => { console.error(String(e && e.stack || e)); process.exit(1); });
