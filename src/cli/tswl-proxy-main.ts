import { run } from './run.js';
import { main } from './tswl-proxy.js';

run('tswl-proxy', main);
