// Writes docs/postman/payd.postman_collection.json from docs/openapi.json with openapi-to-postmanv2
// (installed by `make openapi` into target/tools-node), then strips the ids the converter makes up
// at random so that regenerating gives the same file.
//
// Usage: node tools/postman.js <node_modules dir> <openapi.json> <collection out>
'use strict';
const fs = require('fs');
const path = require('path');

const [modules, input, output] = process.argv.slice(2);
const converter = require(path.resolve(modules, 'openapi-to-postmanv2'));

// Random ids (`id`, `_postman_id`) go, and so do the saved example responses (the converter fakes
// their values at random; the schemas in docs/openapi.json say what each answer holds). Everything
// else stays in the converter's order.
function strip(value) {
  if (Array.isArray(value)) return value.map(strip);
  if (value && typeof value === 'object') {
    const out = {};
    for (const [k, v] of Object.entries(value)) {
      if (k === 'id' || k === '_postman_id') continue;
      if (k === 'response' && Array.isArray(v)) {
        out[k] = [];
        continue;
      }
      out[k] = strip(v);
    }
    return out;
  }
  return value;
}

// Each send of a money request gets a fresh Idempotency-Key (Postman's {{$guid}}), and logging in or
// refreshing stores the new tokens in the environment for the requests after it.
function walk(node) {
  for (const item of node.item || []) {
    walk(item);
    const req = item.request;
    if (!req) continue;
    for (const h of req.header || []) {
      if (h.key === 'Idempotency-Key') h.value = '{{$guid}}';
    }
    // Parameters without an example get random values from the converter: name placeholders instead.
    for (const p of [...(req.url.query || []), ...(req.url.variable || [])]) p.value = `<${p.key}>`;
    if (req.body && req.body.mode === 'formdata') {
      for (const f of req.body.formdata || []) if (f.type !== 'file') f.value = `<${f.key}>`;
    }
    const route = (req.url.path || []).join('/');
    if (req.method === 'POST' && (route === 'api/v1/auth/login' || route === 'api/v1/auth/refresh')) {
      item.event = [{
        listen: 'test',
        script: {
          type: 'text/javascript',
          exec: [
            'if (pm.response.code === 200) {',
            "  pm.environment.set('bearerToken', pm.response.json().access_token);",
            "  pm.environment.set('refreshToken', pm.response.json().refresh_token);",
            '}',
          ],
        },
      }];
    }
  }
}

const options = {
  folderStrategy: 'Tags',
  requestNameSource: 'Fallback',
  parametersResolution: 'Example',
  requestParametersResolution: 'Example',
  includeAuthInfoInExample: false,
  enableOptionalParameters: false,
};
converter.convert({ type: 'string', data: fs.readFileSync(input, 'utf8') }, options, (err, result) => {
  if (err || !result.result) {
    console.error('postman: conversion failed:', err || result.reason);
    process.exit(1);
  }
  const collection = strip(result.output[0].data);
  walk(collection);
  collection.info = { ...collection.info, _postman_id: 'payd-openapi' };
  // Requests authenticate with the environment's tokens: bearer {{access_token}}, X-Api-Key {{api_key}}.
  collection.variable = [{ key: 'baseUrl', value: 'http://127.0.0.1:8080', type: 'string' }];
  fs.writeFileSync(output, JSON.stringify(collection, null, 2) + '\n');
  const count = JSON.stringify(collection).split('"request":').length - 1;
  console.log(`postman: ${output} (${count} requests)`);
});
