import type { RouteSpec } from './router.js';
import { copyObject } from './ops/copy-object.js';
import { createBucket } from './ops/create-bucket.js';
import { deleteBucket } from './ops/delete-bucket.js';
import { deleteObject } from './ops/delete-object.js';
import { deleteObjects } from './ops/delete-objects.js';
import { getBucketLocation } from './ops/get-bucket-location.js';
import { getBucketVersioning } from './ops/get-bucket-versioning.js';
import { getObject } from './ops/get-object.js';
import { headBucket } from './ops/head-bucket.js';
import { listBuckets } from './ops/list-buckets.js';
import { listObjects } from './ops/list-objects.js';
import { listObjectsV2 } from './ops/list-objects-v2.js';
import { putObject } from './ops/put-object.js';
import { abortMultipartUpload } from './ops/abort-multipart-upload.js';
import { completeMultipartUpload } from './ops/complete-multipart-upload.js';
import { createMultipartUpload } from './ops/create-multipart-upload.js';
import { listMultipartUploads } from './ops/list-multipart-uploads.js';
import { listParts } from './ops/list-parts.js';
import { uploadPart } from './ops/upload-part.js';
import { uploadPartCopy } from './ops/upload-part-copy.js';

/** Every S3 operation the proxy serves (docs/s3-compatibility.md). */
export const ROUTES: RouteSpec[] = [
  { method: 'GET', level: 'service', name: 'ListBuckets', handler: listBuckets },

  { method: 'PUT', level: 'bucket', name: 'CreateBucket', handler: createBucket },
  { method: 'HEAD', level: 'bucket', name: 'HeadBucket', handler: headBucket },
  { method: 'DELETE', level: 'bucket', name: 'DeleteBucket', handler: deleteBucket },
  { method: 'GET', level: 'bucket', marker: 'location', name: 'GetBucketLocation', handler: getBucketLocation },
  { method: 'GET', level: 'bucket', marker: 'versioning', name: 'GetBucketVersioning', handler: getBucketVersioning },
  { method: 'GET', level: 'bucket', marker: 'list-type', markerValue: '2', name: 'ListObjectsV2', handler: listObjectsV2 },
  { method: 'GET', level: 'bucket', name: 'ListObjects', handler: listObjects },
  { method: 'POST', level: 'bucket', marker: 'delete', name: 'DeleteObjects', handler: deleteObjects },
  { method: 'GET', level: 'bucket', marker: 'uploads', name: 'ListMultipartUploads', handler: listMultipartUploads },

  { method: 'POST', level: 'object', marker: 'uploads', name: 'CreateMultipartUpload', handler: createMultipartUpload },
  { method: 'PUT', level: 'object', marker: 'uploadId', headerMarker: 'x-amz-copy-source', name: 'UploadPartCopy', handler: uploadPartCopy },
  { method: 'PUT', level: 'object', marker: 'uploadId', name: 'UploadPart', handler: uploadPart },
  { method: 'POST', level: 'object', marker: 'uploadId', name: 'CompleteMultipartUpload', handler: completeMultipartUpload },
  { method: 'DELETE', level: 'object', marker: 'uploadId', name: 'AbortMultipartUpload', handler: abortMultipartUpload },
  { method: 'GET', level: 'object', marker: 'uploadId', name: 'ListParts', handler: listParts },
  { method: 'GET', level: 'object', marker: 'partNumber', name: 'GetObject', handler: getObject },
  { method: 'HEAD', level: 'object', marker: 'partNumber', name: 'HeadObject', handler: getObject },

  { method: 'PUT', level: 'object', headerMarker: 'x-amz-copy-source', name: 'CopyObject', handler: copyObject },
  { method: 'PUT', level: 'object', name: 'PutObject', handler: putObject },
  { method: 'GET', level: 'object', name: 'GetObject', handler: getObject },
  { method: 'HEAD', level: 'object', name: 'HeadObject', handler: getObject },
  { method: 'DELETE', level: 'object', name: 'DeleteObject', handler: deleteObject },
];
