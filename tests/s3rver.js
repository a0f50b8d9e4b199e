// Starts s3rver (the npm package @20minutes/s3rver, installed by scripts/setup-test-tools.sh)
// for tests/processes.py S3Server: node tests/s3rver.js MODULE_DIR PORT DIRECTORY BUCKET
// The package ships no command of its own, only this library.
const [moduleDir, port, directory, bucket] = process.argv.slice(2);
const S3rver = require(moduleDir);
new S3rver({
  port: Number(port),
  address: '127.0.0.1',
  directory,
  silent: true,
  configureBuckets: [{ name: bucket, configs: [] }],
})
  .run()
  .then(() => console.log(`s3rver listening on 127.0.0.1:${port}`))
  .catch((err) => {
    console.error(err);
    process.exit(1);
  });
